import Foundation
import PetriData
import PetriNN

let (model, data) = try ModelRegistry.make(CommandLine.arguments[1])
let img = try ImageDecoder().decode(contentsOf: URL(fileURLWithPath: CommandLine.arguments[2]))
let t0 = Date()
let logits = try model.logits(data.batch([img]))
let v = logits.scalars
let top = v.indices.sorted { v[$0] > v[$1] }.prefix(5)
print(top.map { "\($0): \(v[$0])" }, Date().timeIntervalSince(t0))
