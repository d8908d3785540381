import ArgumentParser
import Foundation
import Testing
@testable import PetriCLI
import PetriLearn
import PetriStudy

/// Arguments → typed values: what each command hands the study layer.
@Suite struct CommandArgumentTests {
    @Test func curveMethodsBecomeSpecs() throws {
        let c = try CurveCommand.parse(["data/", "--method", "lp, auto:cellnet=none,mlp@clahe(clip=3,tiles=4)", "--backbone", "efficientnet-lite1",
                                        "--sizes", "5,all", "--seeds", "0,2"])
        #expect(try Arguments.methods(c.method, backbone: c.backbone).map(\.description)
                == ["lp:b=lite1", "auto:cellnet=none", "mlp:b=lite1@clahe(clip=3.0,tiles=4)"])
        #expect(try Arguments.sizes(c.sizes) == [5, nil] && Arguments.seeds(c.seeds) == [0, 2])
        let policy = try c.dataset.policy()
        #expect(policy.source == "data/" && policy.minClassSize == 10 && policy.maxPerClass == nil && policy.preprocessing.isEmpty)
    }

    /// A bad setting is an argument error (exit 64) naming the setting.
    @Test func badArgumentsAreRefusedWithTheirName() {
        let cases: [([String], String)] = [
            (["data/", "--method", "lp:v=9"], "v=9"),
            (["data/", "--method", "scratch:aug=sparkle"], "sparkle"),
            (["data/", "--method", "auto:diagnostics=everything"], "everything"),
            (["data/", "--sizes", "5,zero"], "--sizes"),
            (["data/", "--seeds", "-1"], "--seeds"),
            (["data/", "--preprocess", "clahe(clip=x)"], "clip"),
            (["data/", "--max-per-class", "0"], "--max-per-class"),
        ]
        for (arguments, word) in cases {
            do {
                _ = try CurveCommand.parse(arguments)
                Issue.record("accepted: \(arguments)")
            } catch {
                #expect(CurveCommand.exitCode(for: error) == .validationFailure, "\(arguments)")
                #expect(CurveCommand.message(for: error).contains(word), "\(arguments): \(CurveCommand.message(for: error))")
            }
        }
    }

    @Test func studyComparisonsAndProtocols() throws {
        let preprocessing = try StudyCommand.parse(["data/", "--compare", "preprocessing"]).study()
        #expect(preprocessing.methods.map(\.description) == ["mlp:l=stage6+head:v=8", "mlp:l=stage6+head:v=8@grey", "mlp:l=stage6+head:v=8@clahe",
                                                               "mlp:l=stage6+head:v=8@reinhard", "mlp:l=stage6+head:v=8@macenko",
                                                               "mlp:l=stage6+head:v=8@tophat", "mlp:l=stage6+head:v=8@sobel", "mlp:l=stage6+head:v=8@lbp"])
        let augmentation = try StudyCommand.parse(["data/", "--compare", "augmentation"]).study()
        #expect(augmentation.methods.map(\.description) == ["scratch-mini:aug=none", "scratch-mini:aug=dihedral", "scratch-mini:aug=crop",
                                                             "scratch-mini:aug=hsv", "scratch-mini:aug=hed", "scratch-mini:aug=blur",
                                                             "scratch-mini:aug=noise", "scratch-mini"])
        let transfer = try StudyCommand.parse(["data/"]).study()
        #expect(transfer.methods.map(\.description) == ["auto", "lp", "lp-tta", "proto", "scratch-mini", "lp-random"])
        #expect(transfer.evaluation == .fewShot && transfer.sizes == [5, 10, 20, nil] && transfer.report == "petri-report.html")
        let kfold = try StudyCommand.parse(["data/", "--protocol", "kfold", "--folds", "4", "--repeats", "2", "--methods", "lp"]).study()
        let lp = try MethodSpec(parsing: "lp")
        #expect(kfold.evaluation == .kFold(folds: 4, repeats: 2, holdout: 0.1) && kfold.methods == [lp])
        #expect(throws: (any Error).self) { try StudyCommand.parse(["data/", "--compare", "everything"]) }
        #expect(throws: (any Error).self) { try StudyCommand.parse(["data/", "--protocol", "loo"]) }
    }

    @Test func trainingSettings() throws {
        let t = try TrainCommand.parse(["data/", "--out", "m.petri", "--method", "auto:cellnet=none", "--seed", "3", "--colour-copies", "2"]).training()
        #expect(t.method.description == "auto:cellnet=none" && t.seed == 3 && t.colourCopies == 2 && t.targetAccuracy == 0.95)
        #expect(throws: (any Error).self) { try TrainCommand.parse(["data/", "--out", "m.petri", "--method", "lp,proto"]) }
        #expect(throws: (any Error).self) { try TrainCommand.parse(["data/", "--out", "m.petri", "--coverage", "1"]) }
    }

    @Test func adaptationSettings() throws {
        let e = try EvaluateCommand.parse(["m.petri", "other/", "--adapt", "centercrop(fraction=0.5)", "--adapt-heads", "--adapt-steps", "30"])
        let a = try e.adaptation.settings()
        guard case let .steps(p) = a.images else { Issue.record("not steps: \(a.images)"); return }
        #expect(p.spec == "centercrop(fraction=0.5)" && a.heads && !a.norm && a.steps == 30)
        for spec in ["none", "scale", "scale-colour", "auto", "auto-colour"] {
            let images = try EvaluateCommand.parse(["m.petri", "other/", "--adapt", spec]).adaptation.settings().images
            #expect(images.spec == spec)
            #expect(images.decidesModelAdaptation == (spec == "auto" || spec == "auto-colour"))
        }
        #expect(throws: (any Error).self) { try EvaluateCommand.parse(["m.petri", "other/", "--adapt", "zoom"]) }
        #expect(throws: (any Error).self) { try EvaluateCommand.parse(["m.petri", "other/", "--adapt-diversity", "-1"]) }
    }

    @Test func featuresAcceptATrainedBackboneName() throws {
        // ImageNet names are always known; an unknown name is refused before any image is read.
        _ = try FeaturesCommand.parse(["data/", "--out", "f.npy", "--backbone", "efficientnet-lite2", "--level", "stage6"])
        #expect(throws: (any Error).self) { try FeaturesCommand.parse(["data/", "--out", "f.npy", "--backbone", "no-such-net"]) }
        #expect(throws: (any Error).self) { try FeaturesCommand.parse(["data/", "--out", "f.npy", "--level", "stage9"]) }
    }
}
