import Foundation

/// Slow checks (references against PyTorch, gradients against finite differences on large layers, full round
/// trips of trained models) run when `PETRI_SLOW_TESTS=1`; `.ci/run` sets it, so CI runs them all.
let slowTests = ProcessInfo.processInfo.environment["PETRI_SLOW_TESTS"] == "1"
