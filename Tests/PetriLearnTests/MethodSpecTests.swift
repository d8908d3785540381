import Foundation
import PetriData
import PetriNN
import Testing
@testable import PetriLearn

/// The method language: every spec's text parses back to the same value, two spellings of one method are one
/// spec, a bad setting is an error naming it, and a spec builds the method it says.
@Suite struct MethodSpecTests {
    /// Specs as users write them (README, docs/methods.md, `--help`), each with its canonical text.
    static let examples: [(String, String)] = [
        ("auto", "auto"),
        ("auto:cellnet=none", "auto:cellnet=none"),
        ("auto:views=4", "auto:views=4"),
        ("auto-fast:cellnet=cellnet-bccd", "auto-fast:cellnet=cellnet-bccd"),
        ("auto:probe=lite0:probe-score=accuracy", "auto:probe=lite0:probe-score=accuracy"),
        ("auto:diagnostics=probe-only+test-scores", "auto:diagnostics=probe-only+test-scores"),
        ("lp", "lp"),
        ("lp:b=lite0", "lp"),
        ("lp:v=8", "lp-tta"),
        ("lp:b=lite0+lite1:l=stage6+head:v=8:c=0.5", "lp:b=lite0+lite1:l=stage6+head:v=8:c=0.5"),
        ("lp:b=efficientnet-lite2", "lp:b=lite2"),
        ("lp:c=1+0.6", "lp:c=1+0.6"),
        ("lp-random", "lp-random"),
        ("lp:b=random-lite1", "lp:b=random-lite1"),
        ("mlp:b=lite0:l=stage6+head:v=8", "mlp:l=stage6+head:v=8"),
        ("mlp:b=lite0+lite1+lite2:l=stage6+head:v=8", "mlp-multi"),
        ("mlp-multi:with=cellnet", "mlp:b=lite0+lite1+lite2:l=stage6+head:v=8:with=cellnet"),
        ("mlp:h=128:steps=600:rows=1:colour=2:cv=1", "mlp:rows=1:h=128:steps=600:colour=2:cv=1"),
        ("knn:v=8", "knn:v=8"),
        ("proto:c=0.4", "proto:c=0.4"),
        ("lpmlp:b=lite1", "avg(lp:b=lite1|mlp:b=lite1)"),
        ("ens-multi", "ens-multi"),
        ("avg(lp-multi|lp-levels-multi)", "ens-multi"),
        ("avg(mlp-multi|scratch-mini)", "avg(mlp-multi|scratch-mini)"),
        ("avg(mlp@reinhard | scratch-mini:c=0.4)", "avg(mlp@reinhard|scratch-mini:c=0.4)"),
        ("mlp@reinhard", "mlp@reinhard"),
        ("lp-tta@clahe+grey", "lp-tta@clahe+grey"),
        ("mlp@clahe(clip=2,tiles=8)", "mlp@clahe"),
        ("mlp@clahe(clip=3,tiles=4)", "mlp@clahe(clip=3.0,tiles=4)"),
        ("mlp:b=lite0:l=stage6+head:v=8@macenko", "mlp:l=stage6+head:v=8@macenko"),
        ("finetune", "finetune"),
        ("finetune:b=lite0:e=30:min=100:c=0.5:lr=0.001", "finetune:e=30:min=100:c=0.5"),
        ("finetune:after=stage5", "partial"),
        ("partial:views=4:e=20", "partial:e=20:views=4"),
        ("finetune:lpft=0:tta=0:body=0.2:bs=8:aug=light", "finetune:aug=light:body=0.2:bs=8:lpft=0:tta=0"),
        ("scratch-lite0", "scratch-lite0"),
        ("scratch", "scratch"),
        ("scratch:net=cnn-mini", "scratch-mini"),
        ("scratch:net=cbr-small:min=600:e=40:aug=cells:lr=0.002", "scratch-small:min=600:e=40"),
        ("scratch-mini:aug=hed(sigma=0.05,bias=0.01,p=0.5)+blur(sigma=0.1-1.5)",
         "scratch-mini:aug=hed(sigma=0.05,bias=0.01,p=0.5)+blur"),
        ("scratch:net=cnn-mini:aug=crop(scale=0.6-1)", "scratch-mini:aug=crop"),
        ("scratch:net=cnn-mini:aug=hsv(h=0.03,s=0.15,v=0.1)", "scratch-mini:aug=hsv"),
        ("scratch-mini:aug=none", "scratch-mini:aug=none"),
    ]

    @Test func examplesParseToTheirCanonicalTextAndBack() throws {
        for (text, canonical) in Self.examples {
            let spec = try MethodSpec(parsing: text)
            #expect(spec.description == canonical, "\(text)")
            #expect(try MethodSpec(parsing: spec.description) == spec, "\(text)")
            #expect(MethodSpec(spec.description) == spec)
            let coded = try JSONDecoder().decode(MethodSpec.self, from: JSONEncoder().encode(spec))
            #expect(coded == spec)
        }
    }

    @Test func everyPresetIsItsOwnName() throws {
        for (name, spec) in MethodSpec.presets() {
            #expect(spec.description == name)
            #expect(try MethodSpec(parsing: name) == spec)
        }
    }

    /// `--backbone` chooses the backbone of single-backbone presets; the spec then says so.
    @Test func theCommandsBackboneIsPartOfTheSpec() throws {
        let lite1 = "efficientnet-lite1"
        #expect(try MethodSpec(parsing: "lp", backbone: lite1).description == "lp:b=lite1")
        #expect(try MethodSpec(parsing: "lp", backbone: lite1) == MethodSpec(parsing: "lp:b=lite1"))
        #expect(try MethodSpec(parsing: "lp-random", backbone: lite1).description == "lp:b=random-lite1")
        #expect(try MethodSpec(parsing: "finetune", backbone: lite1).description == "finetune:b=lite1")
        #expect(try MethodSpec(parsing: "lp-multi", backbone: lite1).description == "lp-multi")
    }

    @Test func listsSplitAtTopLevelCommasOnly() throws {
        let list = try MethodSpec.list("auto, lp,mlp@clahe(clip=3,tiles=4),avg(lp|proto)")
        #expect(list.map(\.description) == ["auto", "lp", "mlp@clahe(clip=3.0,tiles=4)", "avg(lp|proto)"])
        #expect(throws: MethodSpecError.self) { try MethodSpec.list("lp,,proto") }
    }

    /// Each bad spec, and words its error must contain (the key, what is allowed).
    static let mistakes: [(String, [String])] = [
        ("lp:x=1", ["unknown key 'x'", "b, l, v, c"]),
        ("lp:v=eight", ["v=eight", "not a whole number", "1…8"]),
        ("lp:v=9", ["v=9", "out of range"]),
        ("lp:v=8:v=4", ["'v' given twice"]),
        ("lp:c=0", ["c=0", "(0, 1]"]),
        ("lp:c=1.5", ["c=1.5"]),
        ("lp:l=stage9", ["l=stage9", "unknown level"]),
        ("lp:h=128", ["unknown key 'h'"]),
        ("lp:b=", ["b="]),
        ("lp:b=lite0+lite0", ["given twice"]),
        ("lp:v", ["'v' is not key=value"]),
        ("mlp:steps=-3", ["steps=-3", "out of range"]),
        ("mlp:rows=yes", ["rows=yes", "0 or 1"]),
        ("finetune:e=lots", ["e=lots", "not a whole number"]),
        ("finetune:after=head", ["after=head"]),
        ("finetune:lr=fast", ["lr=fast", "not a number"]),
        ("finetune:b=random-lite0", ["pretrained=0"]),
        ("scratch:net=resnet", ["net=resnet", "cbr-tiny, cbr-small, cnn-mini"]),
        ("scratch:aug=sparkle", ["aug=sparkle", "unknown transform 'sparkle'"]),
        ("scratch:aug=blur(sigma=big)", ["aug=blur(sigma=big)", "sigma"]),
        ("scratch:aug=hed(sigma=0.05)@0.5", ["p=", "hed(sigma=0.05,p=0.5)"]),
        ("scratch:aug=@policy.txt", ["@FILE"]),
        ("auto:views=3", ["views=3", "1, 2, 4 or 8"]),
        ("auto:cellnet=lite0", ["cellnet=lite0", "trained backbone"]),
        ("auto:probe=all", ["probe=all", "both or lite0"]),
        ("auto:diagnostics=verbose", ["unknown diagnostic 'verbose'"]),
        ("auto:speed=fast", ["unknown key 'speed'", "cellnet, views, probe, probe-score, diagnostics"]),
        ("ens-multi:v=8", ["takes no settings"]),
        ("avg(lp)", ["two or more"]),
        ("avg(lp|proto", ["missing its ')'"]),
        ("lpp", ["unknown method 'lpp'", "lp-tta"]),
        ("mlp@0.5", ["'@' starts the preprocessing"]),
        ("mlp@sparkle", ["unknown transform 'sparkle'"]),
        ("mlp@reinhard@grey", ["'@'"]),
        ("lpmlp:h=128", ["unknown key 'h'"]),
    ]

    @Test func badSettingsAreErrorsNamingThem() {
        for (text, words) in Self.mistakes {
            do {
                let spec = try MethodSpec(parsing: text)
                Issue.record("'\(text)' was accepted as \(spec)")
            } catch let error as MethodSpecError {
                #expect(error.spec == text)
                for w in words { #expect(error.description.contains(w), "\(text): \(error)") }
            } catch {
                Issue.record("'\(text)': \(error)")
            }
        }
    }

    /// The methods the presets build are the ones Petri always ran under those names (their labels spell out
    /// every setting), so results keyed by the new specs measure the same things.
    @Test func presetsBuildTheMethodsTheyName() throws {
        let labels: [(String, String)] = [
            ("lp", "lp[lite0,head]"), ("lp-tta", "lp[lite0,head,tta8]"), ("lp-multi", "lp[lite0+lite1+lite2,head,tta8]"),
            ("lp-levels", "lp[lite0,stage5+stage6+head,tta8]"), ("lp-levels-multi", "lp[lite0+lite1+lite2,stage6+head,tta8]"),
            ("lp-random", "lp[random:lite0,head]"), ("knn", "knn5[lite0,head]"), ("proto", "proto[lite0,head]"),
            ("mlp", "mlp[lite0,head]"), ("mlp-multi", "mlp[lite0+lite1+lite2,stage6+head,tta8]"),
            ("mlp:b=lite0:v=8:with=lite1", "mlp[lite0,head,tta8 | lite1,head,tta8]"),
            ("mlp:colour=2:cv=1:h=128", "mlp[lite0,head,h128,colour2x1v]"),
            ("scratch", "scratch[cbr-tiny,cells,min400]"), ("scratch-mini:c=0.4", "scratch[cnn-mini,cells,min400,crop0.4]"),
            ("scratch-small:bs=32", "scratch[cbr-small,cells,min400,bs32]"),
            ("finetune", "finetune[lite0,cells,e15,lpft]"), ("partial", "partial[stage5][lite0,cells,e15,lpft,cached8]"),
            ("scratch-lite0", "scratch[lite0,cells,e15,min200,bn]"),
            ("finetune:e=30:min=100:c=0.5", "finetune[lite0,cells,e30,min100,crop0.5,lpft]"),
            ("mlp@reinhard+clahe", "mlp[lite0,head]@reinhard+clahe(clip=2.0,tiles=8)"),
        ]
        for (text, label) in labels {
            #expect(try MethodSpec(parsing: text).method().name == label, "\(text)")
        }
        let scratch = try #require(try MethodSpec(parsing: "scratch:bs=8:lr=0.01:e=3:min=7:aug=light").method() as? ScratchMethod)
        #expect(scratch.recipe.batchSize == 8 && scratch.recipe.microBatch == 8 && scratch.recipe.learningRate == 0.01)
        #expect(scratch.recipe.epochs == 3 && scratch.recipe.minimumSteps == 7 && scratch.recipe.augmentation == "light")
        let ft = try #require(try MethodSpec(parsing: "finetune:lpft=0:tta=0:body=0.2:bs=8:views=2:after=stage4").method() as? FineTuneMethod)
        #expect(!ft.linearProbeHead && !ft.testTimeAugmentation && ft.bodyLearningRateScale == 0.2 && ft.batchSize == 8)
        #expect(ft.cachedViews == 2 && ft.trainAfter == .stage(4))
        let lpmlp = try #require(try MethodSpec(parsing: "lpmlp:v=8").method() as? EnsembleMethod)
        #expect(lpmlp.members.map(\.name) == ["lp[lite0,head,tta8]", "mlp[lite0,head,tta8]"] && lpmlp.weights == nil)
        // Augmentation steps reach training as a pipeline the trainer reads.
        let aug = try #require(try MethodSpec(parsing: "scratch-mini:aug=hed(sigma=0.05,p=0.5)+dihedral").method() as? ScratchMethod)
        #expect(try TransformPipeline.augmentation(aug.recipe.augmentation).steps.count == 2)
    }

    @Test func autoSpecsBuildTheRecipeTheySay() throws {
        let auto = try #require(try MethodSpec(parsing: "auto:cellnet=none:views=4:diagnostics=test-scores").method() as? AutoMethod)
        #expect(auto.name == "auto:cellnet=none:views=4:diagnostics=test-scores")
        #expect(auto.crops == AutoRecipe.crops && auto.recordTestScores && !auto.probeOnly)
        let candidates = try #require(auto.candidatesForCrop?([0.4, 1]))
        let mlp = try #require(candidates[0] as? MLPMethod)
        #expect(mlp.features.views == 4 && mlp.features.crops == [0.4] && mlp.partners.map(\.crops) == [[1]])
        #expect((candidates[1] as? ScratchMethod)?.crop == 0.4)
        let fast = try #require(try MethodSpec(parsing: "auto-fast:cellnet=none:diagnostics=probe-only").method() as? AutoMethod)
        #expect(fast.candidates.count == 1 && fast.probeOnly)
        #expect(throws: MethodSpecError.self) { try MethodSpec(parsing: "auto:cellnet=no-such-cellnet").method() }
        #expect(throws: MethodSpecError.self) { try MethodSpec(parsing: "mlp:b=no-such-backbone").method() }
    }

    static let methodsDoc = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/methods.md")

    /// docs/methods.md's examples: each parses, prints as documented and parses back.
    @Test func documentedExamplesRoundTrip() throws {
        let text = try String(contentsOf: Self.methodsDoc, encoding: .utf8)
        var examples: [String] = [], inBlock = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") { inBlock = line == "```methods"; continue }
            if inBlock, !line.isEmpty { examples.append(String(line)) }
        }
        #expect(examples.count > 40)
        for example in examples {
            let parts = example.components(separatedBy: " → ")
            let spec = try MethodSpec(parsing: parts[0])
            #expect(spec.description == (parts.count > 1 ? parts[1] : parts[0]), "\(example)")
            #expect(try MethodSpec(parsing: spec.description) == spec)
        }
    }

    /// docs/methods.md's key tables are the parser's keys, in its order, with its words for the values.
    @Test func documentedKeysAreTheParsersKeys() throws {
        let text = try String(contentsOf: Self.methodsDoc, encoding: .utf8)
        func rows(_ heading: String) -> [String] {
            guard let start = text.range(of: "\n## " + heading) else { return [] }
            let section = text[start.upperBound...].prefix { _ in true }
            let end = section.range(of: "\n## ")?.lowerBound ?? section.endIndex
            return section[..<end].split(separator: "\n").filter { $0.hasPrefix("| `") }.map(String.init)
        }
        func documented<V>(_ keys: [SpecKey<V>]) -> [String] { keys.map { "| `\($0.name)` | \($0.allowed) |" } }
        #expect(rows("Frozen-feature heads") == documented(ProbeSpec(.mlp).keys))
        #expect(rows("Fine-tuning") == documented(FineTuneSpec().keys))
        #expect(rows("From scratch") == documented(ScratchSpec().keys))
        #expect(rows("`auto`") == documented(AutoSpec().keys))
        // Every preset has its row.
        let presetRows = rows("Presets").map { $0.dropFirst(3).prefix { $0 != "`" } }.map(String.init)
        #expect(presetRows == MethodSpec.presets().map(\.name))
    }

    @Test func runKeysReadTheirRecords() throws {
        let key = RunKey(method: "mlp@reinhard", size: nil, seed: 3)
        #expect(key.description == "mlp@reinhard|all|3")
        #expect(RunKey(json: ["method": "mlp@reinhard", "size": "all", "seed": 3]) == key)
        #expect(RunKey(json: ["method": "lp", "size": 5, "seed": 0]) == RunKey(method: "lp", size: 5, seed: 0))
        #expect(RunKey(json: ["method": "lp", "size": "many", "seed": 0]) == nil)
        #expect(RunKey(method: "lp", sizeLabel: "0", seed: 0) == nil)
    }
}
