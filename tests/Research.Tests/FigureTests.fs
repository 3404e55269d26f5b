module Research.Tests.FigureTests

open System
open System.IO
open System.Text.Json
open System.Xml.Linq
open Expecto
open Deedle
open Research
open Research.Pipelines
open Research.Runs
open Research.Tests.TestUtil

/// The PNG signature and the IHDR width and height.
let private pngSize (path: string) =
    let b = File.ReadAllBytes path
    Expect.isGreaterThan b.Length 24 $"{path} has a header"
    Expect.sequenceEqual b[0..7] [| 0x89uy; 0x50uy; 0x4Euy; 0x47uy; 0x0Duy; 0x0Auy; 0x1Auy; 0x0Auy |] $"{path}: PNG signature"
    let be (i: int) = (int b[i] <<< 24) ||| (int b[i + 1] <<< 16) ||| (int b[i + 2] <<< 8) ||| int b[i + 3]
    be 16, be 20

/// Every text node of an SVG (titles, axis titles, legend entries, tick labels).
let private svgTexts (path: string) =
    let doc = XDocument.Load path
    Expect.equal doc.Root.Name.LocalName "svg" $"{path}: root element"
    doc.Descendants() |> Seq.filter (fun e -> e.Name.LocalName = "text") |> Seq.map (fun e -> e.Value) |> Set.ofSeq

/// The traces of a chart as plotly.js sees them.
let private traces (chart: Plotly.NET.GenericChart) =
    use doc = JsonDocument.Parse(Plotly.NET.GenericChart.toFigureJson chart)
    [ for t in doc.RootElement.GetProperty("data").EnumerateArray() ->
        let strings (p: string) = match t.TryGetProperty p with | true, v -> [ for x in v.EnumerateArray() -> x.ToString() ] | _ -> []
        t.GetProperty("name").GetString(), strings "x", strings "y" ]

[<Tests>]
let tests =
    // In Groups.inProcess: trains in this process, one list at a time, beside the lists that train in child processes.
    testSequencedGroup Groups.inProcess <| testList "Figures" [
        testList "Tables" [
            test "booktabs rules, escaped text, fixed decimals, right-aligned number columns" {
                let t = { Header = [ "stage_name"; "ppl & co"; "n" ]
                          Rows = [ [ box "adapt_50%"; box 12.34567; box 3 ]; [ box "a{b}#$~^\\"; Tables.missing; box 10L ] ] }
                let tex = Tables.latex "Perplexity, 50% replay" "tab:x" t
                let lines = tex.Split('\n') |> Array.map (fun l -> l.Trim())
                let at (s: string) = Array.IndexOf(lines, s)
                Expect.isTrue (at @"\toprule" >= 0 && at @"\toprule" < at @"\midrule" && at @"\midrule" < at @"\bottomrule") "rules in order"
                Expect.contains lines @"\begin{tabular}{lrr}" "text left, numbers right (a missing cell does not make a column text)"
                Expect.contains lines @"stage\_name & ppl \& co & n \\" "escaped header"
                Expect.contains lines @"adapt\_50\% & 12.346 & 3 \\" "escaped text, 3 decimals, integers as they are"
                Expect.contains lines @"a\{b\}\#\$\textasciitilde{}\textasciicircum{}\textbackslash{} & -- & 10 \\" "every special character; missing = --"
                Expect.contains lines @"\caption{Perplexity, 50\% replay}" "escaped caption"
                Expect.contains lines @"\label{tab:x}" "label"
                let md = Tables.markdown { Header = [ "a|b"; "v" ]; Rows = [ [ box "x|y"; box 2.5 ] ] }
                Expect.equal md "| a\\|b | v |\n| --- | ---: |\n| x\\|y | 2.500 |\n" "markdown with escaped pipes"
            }

            test "number formatting: fixed, scientific at the extremes, missing and infinite" {
                Expect.equal (Tables.formatNumber 3 1.23456) "1.235" "rounded"
                Expect.equal (Tables.formatNumber 2 -0.5) "-0.50" "negative"
                Expect.equal (Tables.formatNumber 3 0.0) "0.000" "zero stays fixed"
                Expect.equal (Tables.formatNumber 3 0.0000123) "1.23e-05" "tiny"
                Expect.equal (Tables.formatNumber 3 2.5e7) "2.50e+07" "huge"
                Expect.equal (Tables.formatNumber 3 nan) "--" "missing"
                Expect.equal (Tables.formatNumber 3 infinity) "inf" "infinite"
            }

            test "a row with the wrong number of cells names the row" {
                throwsWith<ArgumentException> (fun () -> Tables.latex "c" "l" { Header = [ "a"; "b" ]; Rows = [ [ box 1 ] ] } |> ignore)
                    [ "row 1"; "1 cells"; "2 columns" ] "ragged row"
            }

            test "a Deedle frame becomes a table with its row keys first" {
                let f = Frame.ofValues [ ("pretrain", "finance", 50.5); ("pretrain", "general", 20.25); ("adapt", "finance", 11.0) ]
                let t = Tables.ofFrame "stage" f
                Expect.equal t.Header [ "stage"; "finance"; "general" ] "header"
                Expect.equal (t.Rows |> List.map (List.map (Tables.formatCell 2))) [ [ "pretrain"; "50.50"; "20.25" ]; [ "adapt"; "11.00"; "--" ] ] "cells"
            }
        ]

        testList "Charts" [
            test "HTML is self-contained: plotly.js inline, no external script, the title in it" {
                let chart = Figures.trainingCurves "Loss <&> curves" "loss" [ "pretrain", [ 0.0, 3.0; 1.0, 2.0 ] ]
                let html = Figures.toHtml chart
                Expect.isFalse (Text.RegularExpressions.Regex.IsMatch(html, @"<script[^>]*\bsrc\s*=", Text.RegularExpressions.RegexOptions.IgnoreCase)) "no <script src=...>"
                Expect.isFalse (html.Contains "<link") "no external stylesheet"
                Expect.isGreaterThan html.Length 1_000_000 "plotly.min.js is inlined (about 3.5 MB)"
                Expect.stringContains html "Plotly.newPlot" "draws the chart"
                Expect.stringContains html "<title>Loss &lt;&amp;&gt; curves</title>" "escaped page title"
            }

            test "capability by stage: one bar trace per capability over the stages, in first-seen order" {
                let chart =
                    Figures.capabilityByStage "caps" "score"
                        [ "finance", "base", 1.0; "general", "base", 2.0; "finance", "adapt", 3.0; "general", "adapt", 4.0; "math", "adapt", 5.0 ]
                let ts = traces chart
                Expect.equal (ts |> List.map (fun (n, _, _) -> n)) [ "finance"; "general"; "math" ] "legend entries"
                let _, xs, ys = ts[0]
                Expect.equal xs [ "base"; "adapt" ] "stages in order"
                Expect.equal (ys |> List.map float) [ 1.0; 3.0 ] "finance scores"
                let _, mx, _ = ts[2]
                Expect.equal mx [ "adapt" ] "a capability measured at one stage only has one bar"
            }

            test "fits: a function sampled over the points' range, samples sorted; sweep draws points and line" {
                let pts = Figures.fitPoints 0.0 0.5 (FitFunction("line", fun x -> 1.0 + 2.0 * x))
                Expect.equal pts.Length 50 "50 samples"
                Expect.equal (List.head pts) (0.0, 1.0) "first"
                Expect.floatClose Accuracy.high (fst (List.last pts)) 0.5 "last x"
                Expect.floatClose Accuracy.high (snd (List.last pts)) 2.0 "last y"
                Expect.equal (Figures.fitPoints 0.0 1.0 (FitSamples("s", [ 1.0, 5.0; 0.0, 4.0 ]))) [ 0.0, 4.0; 1.0, 5.0 ] "sorted samples"
                let chart = Figures.sweep "s" "x" "y" [ "run", [ 0.0, 1.0; 0.5, 2.0 ], Some(FitFunction("fit", fun x -> 1.0 + 2.0 * x)); "other", [ 0.0, 3.0 ], None ]
                Expect.equal (traces chart |> List.map (fun (n, _, _) -> n)) [ "run"; "run: fit"; "other" ] "points, fitted line, points"
                let merge = Figures.mergeSweep "m" "score" [ "ties", 0.5, 2.0; "linear", 0.5, 1.0; "ties", 0.0, 1.5 ]
                let ties = traces merge |> List.find (fun (n, _, _) -> n = "ties")
                Expect.equal ties ("ties", [ "0.0"; "0.5" ], [ "1.5"; "2.0" ]) "one line per method, sorted by coefficient"
            }

            test "empty inputs are refused with the figure's name" {
                throwsWith<ArgumentException> (fun () -> Figures.forgettingVsGain "t" "g" "f" [] |> ignore) [ "forgettingVsGain" ] "no points"
            }
        ]

        test "Chromium.ensure runs the embedded copy of scripts/setup/chromium.sh, which is idempotent" {
            let rec up (d: DirectoryInfo | null) =
                match d with
                | null -> failwith "Research.sln not found"
                | d when File.Exists(Path.Combine(d.FullName, "Research.sln")) -> d.FullName
                | d -> up d.Parent
            let onDisk = File.ReadAllText(Path.Combine(up (DirectoryInfo AppContext.BaseDirectory), "scripts", "setup", "chromium.sh"))
            Expect.equal (Chromium.setupScript ()) onDisk "the embedded script is the repository's"
            Expect.stringContains onDisk "if [ -x /usr/bin/chromium ]; then\n    exit 0" "does nothing when chromium exists"
            Expect.equal (Some (Chromium.ensure ())) (Chromium.tryFind ()) "ensure returns the installed executable"
        }

        testCase "research report on a tiny quick start writes HTML, PNG, SVG, PDF, .tex and .md" <| fun _ ->
            let ws = tempDir "report-ws"
            let e = Experiment.quickStart (QuickStartOptions(Seed = 3, GeneralDocuments = 120, PretrainSteps = 10, AdaptSteps = 10, CheckpointEvery = 10))
            let result = Executor(ExecutorOptions(Workspace = ws, Log = TextWriter.Null)).Run e
            let out = Path.Combine(ws, "report")
            let run args = Research.Cli.Commands.ReportCommand.Execute(Research.Cli.CliArgs.Parse(List.toArray args, [||], Research.Cli.Commands.ReportCommand.Options))
            let code = run [ "quickstart"; "--workspace"; ws; "--out"; out; "--metrics"; "perplexity" ]
            Expect.equal code 0 "exit code"
            let file name = Path.Combine(out, name)
            for stem in [ "training-curves"; "eval-perplexity" ] do
                for ext in [ ".html"; ".png"; ".svg"; ".pdf" ] do
                    Expect.isTrue (File.Exists(file (stem + ext))) $"{stem}{ext}"
                let w, h = pngSize (file (stem + ".png"))
                Expect.equal (w, h) (2 * Figures.width, 2 * Figures.height) $"{stem}.png is the figure at scale 2"
                Expect.isGreaterThan (FileInfo(file (stem + ".png"))).Length 10_000L $"{stem}.png is not blank"
                let pdf = File.ReadAllBytes(file (stem + ".pdf"))
                Expect.equal (Text.Encoding.ASCII.GetString(pdf, 0, 5)) "%PDF-" $"{stem}.pdf signature"
            // Provenance: each file carries the reported run's manifest inside it (PNG tEXt, PDF Info...) and beside it.
            let keys = [ for n in result.Runs[0].Nodes -> n.Key ]
            for f in [ "training-curves.png"; "eval-perplexity.pdf"; "eval-perplexity.svg"; "eval-perplexity.html"; "results.tex"; "results.md" ] do
                Expect.isTrue (File.Exists(file (f + Manifest.SidecarSuffix))) $"{f} has its sidecar"
                let inside = Manifest.Parse(ManifestFiles.Embedded(file f), f)
                Expect.equal (List.ofSeq inside.Runs) [ 1L ] $"{f}: the run, inside the file"
                Expect.equal [ for s in inside.Stages -> s.Key ] keys $"{f}: the stage keys, inside the file"
            let curves = svgTexts (file "training-curves.svg")
            for t in [ "Training loss: quickstart (run 1)"; "step"; "training loss (nats per token)"; "pretrain"; "adapt-no-replay"; "adapt-replay-0.1" ] do
                Expect.contains curves t $"training-curves.svg has '{t}' (title, axis titles, legend)"
            let evals = svgTexts (file "eval-perplexity.svg")
            for t in [ "perplexity by stage: quickstart (run 1)"; "stage"; "perplexity"; "domain"; "general_retention" ] do
                Expect.contains evals t $"eval-perplexity.svg has '{t}'"
            Expect.isFalse (File.Exists(file "eval-bits_per_byte.png")) "--metrics limits the figures"
            let tex = File.ReadAllText(file "results.tex")
            for t in [ @"\toprule"; @"\midrule"; @"\bottomrule"; @"domain bits\_per\_byte"; "adapt-replay-0.1 & adapt & done" ] do
                Expect.stringContains tex t $"results.tex has {t}"
            Expect.isTrue (File.Exists(file "eval-bits_per_byte.tex")) "every evaluation metric gets a table"
            use store = new RunStore(ws)
            let nodes = store.Nodes 1L
            let pretrainKey = nodes[0].Key
            let perplexity = store.Evaluations(1L) |> Seq.find (fun x -> x.NodeKey = pretrainKey && x.Suite = "domain" && x.Metric = "perplexity")
            Expect.stringContains (File.ReadAllText(file "eval-perplexity.md")) $"| pretrain | {Tables.formatNumber 3 perplexity.Value} |" "the table holds the recorded score"
            throwsWith<Research.Cli.CliException> (fun () -> run [ "nosuch"; "--workspace"; ws ] |> ignore) [ "nosuch"; "quickstart" ] "unknown experiment lists the known ones"
    ]
