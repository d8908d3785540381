import ArgumentParser
import Foundation
import PetriStudy

/// The `petri` command and its subcommands.
public struct PetriCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "petri",
        abstract: "Image classifiers you can trust from a few hundred labelled biomedical images.",
        discussion: """
            Datasets are ImageFolder folders (DATA/<class name>/<image>), CSVs (path,label[,group]) or \
            MedMNIST-style .npz files. JPEG, PNG, TIFF and BMP are read; unreadable files are reported and skipped.

            Exit codes: 0 success; 1 the command failed (the message names the file and the problem); \
            64 invalid arguments.
            """,
        version: PetriVersion.string,
        subcommands: [StudyCommand.self, CurveCommand.self, RunsCommand.self, TrainCommand.self, PredictCommand.self,
                      EvaluateCommand.self, SplitCommand.self, InspectCommand.self, FeaturesCommand.self, ProbeCommand.self,
                      PurifyCommand.self, PretrainCommand.self, AugmentPreviewCommand.self])

    public init() {}
}
