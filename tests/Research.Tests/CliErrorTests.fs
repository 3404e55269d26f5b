/// The CLI's one error path (CliErrors) and its one argument parser (CliArgs): expected failures are one line and exit
/// 1 or 2; --opt=value and unknown options are handled alike in every command.
module Research.Tests.CliErrorTests

open System
open System.IO
open Expecto
open Research.Cli
open Research.Tests.TestUtil

let private report (e: exn) =
    let err = new StringWriter()
    let code = CliErrors.Report(e, err)
    code, err.ToString()

[<Tests>]
let tests =
    testList "CliErrors" [
        testCase "SQLite, JSON and native errors are one line and exit 1; usage errors exit 2; bugs are not swallowed" <| fun _ ->
            let sqlite = Microsoft.Data.Sqlite.SqliteException("SQLite Error 11: 'database disk image is malformed'.", 11)
            let code, line = report sqlite
            Expect.equal code (Nullable 1) "sqlite"
            Expect.stringContains line "run store error" "says what failed"
            let json = try Text.Json.JsonSerializer.Deserialize<Collections.Generic.Dictionary<string, double>>("{\"a\": [") |> ignore; failwith "no error" with :? Text.Json.JsonException as e -> e
            let code, line = report json
            Expect.equal code (Nullable 1) "json"
            Expect.stringContains line "invalid JSON" "json line"
            let code, line = report (Runtime.InteropServices.ExternalException("shape '[2]' is invalid\nException raised from ... (C++ backtrace)\nframe #0"))
            Expect.equal code (Nullable 1) "native"
            Expect.equal (line.TrimEnd().Split('\n').Length) 1 "the first line of a native message only"
            let code, _ = report (CliException "usage")
            Expect.equal code (Nullable 2) "usage"
            let code, _ = report (AggregateException(InvalidDataException "inner"))
            Expect.equal code (Nullable 1) "unwrapped"
            let code, line = report (NullReferenceException())
            Expect.equal code (Nullable()) "a bug is rethrown by the caller"
            Expect.equal line "" "and prints nothing here"
            let code, _ = report (Research.Data.CorpusException("c.jsonl:3: bad"))
            Expect.equal code (Nullable 1) "corpus errors too"

        testCase "--opt=value, flags with =true/=false, unknown options and missing values, alike" <| fun _ ->
            let a = CliArgs.Parse([| "x"; "--out=dir"; "--json=false"; "--quick"; "--steps"; "3" |], [| "json"; "quick" |], "out", "steps")
            Expect.equal (a.Get "out") "dir" "--out=dir"
            Expect.equal (a.GetInt("steps", 0)) 3 "--steps 3"
            Expect.isFalse (a.Flags.Contains "json") "--json=false"
            Expect.isTrue (a.Flags.Contains "quick") "--quick"
            Expect.equal (List.ofSeq a.Positional) [ "x" ] "positional"
            Expect.equal ((CliArgs.Parse([| "--workspace=w" |], [||])).Get "workspace") "w" "--workspace everywhere"
            throwsWith<CliException> (fun () -> CliArgs.Parse([| "--nope"; "1" |], [||], "out") |> ignore) [ "unknown option --nope"; "--out" ] "unknown"
            throwsWith<CliException> (fun () -> CliArgs.Parse([| "--out" |], [||], "out") |> ignore) [ "--out needs a value" ] "missing value"
            throwsWith<CliException> (fun () -> CliArgs.Parse([| "--json=1" |], [| "json" |]) |> ignore) [ "--json"; "'1'" ] "flag value"
            let code = Research.Cli.Commands.MergeCommand.Execute [| "merge"; "c.yml"; "--outdir"; "x" |]
            Expect.equal code 2 "merge: an unknown option is a usage error"
    ]
