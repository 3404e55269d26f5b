namespace Research

open System
open System.Globalization

/// Small helpers for scripts run by `research run` or `dotnet fsi`.
module Script =
    /// The value after `--name` in the script's arguments, parsed like `fallback`; `fallback` when absent.
    let arg (args: string array) (name: string) (fallback: 'T) : 'T =
        let flag = "--" + name
        match Array.tryFindIndex ((=) flag) args with
        | Some i when i + 1 < args.Length ->
            let text = args[i + 1]
            try Convert.ChangeType(text, typeof<'T>, CultureInfo.InvariantCulture) :?> 'T
            with _ -> failwithf "%s expects a %s, got '%s'" flag typeof<'T>.Name text
        | Some _ -> failwithf "%s needs a value" flag
        | None -> fallback
