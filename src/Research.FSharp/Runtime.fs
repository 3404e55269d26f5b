/// Start-up of the F# layer: torch initialised once, from scripts, notebooks and the CLI alike.
namespace Research

module Runtime =
    /// Initialise libtorch (idempotent). Every DSL entry point calls it; call it yourself before
    /// using TorchSharp directly in a script.
    let init () = Research.Backend.TorchRuntime.EnsureStarted()
