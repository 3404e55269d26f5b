/// Provenance of exports (docs/provenance.md): manifests name the commit, runs, seeds and stage keys; they sit inside
/// HTML, SVG, PNG, PDF, LaTeX and Markdown files and beside every export; `research export` writes store tables that
/// read back; `research provenance` says whether this build would produce each stage again.
module Research.Tests.ProvenanceTests

open System
open System.Diagnostics
open System.IO
open System.IO.Compression
open System.Text
open System.Text.Json
open System.Xml.Linq
open Expecto
open Research
open Research.Pipelines
open Research.Runs
open Research.Tests.TestUtil

let private git (dir: string) (args: string) =
    let psi = ProcessStartInfo("git", args, WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true)
    use p = Process.Start psi
    let out = p.StandardOutput.ReadToEnd()
    p.WaitForExit()
    if p.ExitCode <> 0 then failwithf "git %s failed in %s: %s" args dir (p.StandardError.ReadToEnd())
    out.Trim()

/// pretrain (4 steps) -> adapt (2 steps) of the micro model, evaluated on held-out finance text: a store with two
/// stages, metrics and evaluations, in about a second.
let private fixture =
    lazy
        let ws = tempDir "provenance"
        let world = World.quick 60 5
        let start = pretrain world.General microConfig |> Stage.steps 4 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0
        let step = adapt (world.Finance |> replay world.General 0.25) |> Stage.steps 2 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0 |> Stage.named "a"
        let e =
            Experiment.create "prov" start step
            |> Experiment.seed 11L
            |> Experiment.evaluateEach [ Experiment.heldOutPerplexity world.Finance ]
        let r = Executor(ExecutorOptions(Workspace = ws, Log = TextWriter.Null)).Run e
        ws, world, r

let private chart () = Figures.trainingCurves "Loss" "loss" [ "pretrain", [ 0.0, 3.0; 1.0, 2.0 ] ]

/// CRC-32 bit by bit (PNG's polynomial), independent of the table the code uses.
let private crc (bytes: byte[]) =
    let mutable c = 0xFFFFFFFFu
    for b in bytes do
        c <- c ^^^ uint32 b
        for _ in 1 .. 8 do c <- if c &&& 1u <> 0u then 0xEDB88320u ^^^ (c >>> 1) else c >>> 1
    c ^^^ 0xFFFFFFFFu

/// A 1 x 1 grey PNG, chunk by chunk.
let private tinyPng () =
    let chunk (kind: string) (data: byte[]) =
        let body = Array.append (Encoding.ASCII.GetBytes kind) data
        let be (v: uint32) = [| byte (v >>> 24); byte (v >>> 16); byte (v >>> 8); byte v |]
        Array.concat [ be (uint32 data.Length); body; be (crc body) ]
    let idat =
        use ms = new MemoryStream()
        (use z = new ZLibStream(ms, CompressionLevel.Optimal) in z.Write([| 0uy; 128uy |], 0, 2))
        ms.ToArray()
    Array.concat [ [| 0x89uy; 0x50uy; 0x4Euy; 0x47uy; 0x0Duy; 0x0Auy; 0x1Auy; 0x0Auy |]
                   chunk "IHDR" [| 0uy; 0uy; 0uy; 1uy; 0uy; 0uy; 0uy; 1uy; 8uy; 0uy; 0uy; 0uy; 0uy |]
                   chunk "IDAT" idat; chunk "IEND" [||] ]

/// A one-page PDF with a classic cross-reference table and an Info dictionary, offsets computed as it is written.
let private tinyPdf () =
    let objs = [ "<< /Type /Catalog /Pages 2 0 R >>"; "<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
                 "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>"; "<< /Producer (tiny test) /Title (t) >>" ]
    let sb = StringBuilder("%PDF-1.4\n")
    let offsets = [ for i, o in List.indexed objs -> let at = sb.Length in sb.Append($"{i + 1} 0 obj\n{o}\nendobj\n") |> ignore; at ]
    let xref = sb.Length
    sb.Append($"xref\n0 {objs.Length + 1}\n0000000000 65535 f \n") |> ignore
    for at in offsets do sb.Append($"{at:D10} 00000 n \n") |> ignore
    sb.Append($"trailer\n<< /Size {objs.Length + 1} /Root 1 0 R /Info 4 0 R >>\nstartxref\n{xref}\n%%EOF\n") |> ignore
    Encoding.Latin1.GetBytes(sb.ToString()), xref

let private keysOf (m: Manifest) = [ for s in m.Stages -> s.Name, s.Key ]

let private expectManifestOf (r: ExperimentResult) (m: Manifest) (what: string) =
    Expect.equal (List.ofSeq m.Runs) [ r.Runs[0].RunId ] $"{what}: the run"
    Expect.equal (List.ofSeq m.Seeds) [ 11L ] $"{what}: the seed"
    Expect.equal (keysOf m) [ for n in r.Runs[0].Nodes -> n.Name, n.Key ] $"{what}: the stage keys"

[<Tests>]
let tests =
    // In Groups.inProcess: trains in this process, one list at a time, beside the lists that train in child processes.
    testSequencedGroup Groups.inProcess <| testList "Provenance" [
        test "the commit and dirty flag of the directory's repository, unknown outside one" {
            let repo = tempDir "prov-git"
            git repo "init -q" |> ignore
            File.WriteAllText(Path.Combine(repo, "a.txt"), "a")
            git repo "add a.txt" |> ignore
            git repo "-c user.name=t -c user.email=t@t -c commit.gpgsign=false commit -q -m one" |> ignore
            let head = git repo "rev-parse HEAD"
            let info = GitInfo.Of repo
            Expect.equal info.Commit head "the commit is HEAD"
            Expect.equal info.Dirty "false" "a clean tree"
            File.WriteAllText(Path.Combine(repo, "b.txt"), "uncommitted")
            Expect.equal (GitInfo.Of repo).Dirty "true" "an untracked file makes it dirty"
            let m = Manifest.Create([ 1L ], [ 11L ], [], null, repo)
            Expect.equal (m.Commit, m.Dirty) (head, "true") "Manifest.Create records it"
            let outside = Path.Combine(Path.GetTempPath(), $"research-no-git-{Guid.NewGuid():N}")
            Directory.CreateDirectory outside |> ignore
            Expect.equal (GitInfo.Of outside) (GitInfo(GitInfo.Unknown, GitInfo.Unknown, GitInfo.Unknown)) "no repository: unknown"
            Expect.isTrue (m.Framework.Length > 0 && m.Framework <> "unknown") "the framework's informational version"
        }

        test "a manifest names the runs, seeds and stage keys an export came from, with the data fingerprints" {
            let ws, world, r = fixture.Force()
            let m = Provenance.ofResult r
            expectManifestOf r m "from the result"
            let pretrainKey = r.Runs[0].Node("pretrain").Key
            let a = m.Stages |> Seq.find (fun s -> s.Name = "a")
            Expect.equal (List.ofSeq a.Parents) [ pretrainKey ] "adapt's parent is pretrain's key"
            Expect.equal (a.Data |> Seq.map (fun d -> d.Name, d.Fingerprint) |> List.ofSeq)
                [ "finance", world.Finance.Fingerprint; "general", world.General.Fingerprint ] "the data fingerprints its key used"
            Expect.equal a.Code (Nullable(StageCode.Version "adapt")) "the code version"
            use store = new RunStore(ws)
            let fromStore = Provenance.ofRuns store (store.Runs())
            expectManifestOf r fromStore "from the store"
            Expect.equal fromStore.Store store.Path "names the store"
            let back = Manifest.Parse(m.ToJson(), "test")
            Expect.equal (keysOf back) (keysOf m) "the JSON reads back"
            // The recorded ingredients give the executor's key again, so a manifest is enough to recompute it.
            for s in back.Stages do
                let key = StageKey.Of(s.KeyFormat, s.Kind, s.Code.Value, JsonSerializer.Serialize s.Config.Value, s.Seed, s.Parents, s.Data |> Seq.map (fun d -> d.Fingerprint), s.Files)
                Expect.equal key s.Key $"{s.Name}: StageKey.Of = Executor.Key"
        }

        test "HTML, SVG, LaTeX and Markdown carry the manifest inside them and in a sidecar" {
            let _, _, r = fixture.Force()
            let m = Provenance.ofResult r
            let dir = tempDir "prov-files"
            let html = Figures.saveHtmlWith m dir "curves" (chart ())
            let text = File.ReadAllText html
            Expect.stringContains text "<script type=\"application/json\" id=\"research-provenance\">" "a JSON element in the page"
            Expect.isLessThan (text.IndexOf "research-provenance") (text.IndexOf "</head>") "in the head"
            let inside = Manifest.Parse(ManifestFiles.Embedded html, "html")
            expectManifestOf r inside "inside the HTML"
            let sidecar = Manifest.Parse(File.ReadAllText(html + ".provenance.json"), "sidecar")
            expectManifestOf r sidecar "the sidecar"
            Expect.equal sidecar.File "curves.html" "names the file"
            Expect.equal (ManifestFiles.Unchanged(html, sidecar)) (Nullable true) "the sidecar's hash is the file's"
            File.AppendAllText(html, "<!-- edited -->")
            Expect.equal (ManifestFiles.Unchanged(html, sidecar)) (Nullable false) "an edit is seen"
            let svg = Path.Combine(dir, "f.svg")
            ManifestFiles.WriteText(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"><text>x &amp; y</text></svg>", m)
            let doc = XDocument.Load svg
            let meta = doc.Root.Elements() |> Seq.find (fun e -> e.Name.LocalName = "metadata")
            expectManifestOf r (Manifest.Parse(meta.Value, "svg")) "inside the SVG (still well-formed XML)"
            let tex, md = Tables.saveWith m dir "t" "caption" "tab:t" { Header = [ "a" ]; Rows = [ [ box 1.0 ] ] }
            Expect.stringStarts (File.ReadAllText tex) "% research-provenance: {" "LaTeX: a comment line first"
            Expect.stringContains (File.ReadAllText tex) @"\toprule" "the table follows"
            for f in [ tex; md ] do
                File.Delete(f + ".provenance.json")
                expectManifestOf r (ManifestFiles.Read f) $"{Path.GetFileName f} without its sidecar: the manifest inside"
            let plain = Figures.saveHtml dir "plain" (chart ())
            let none = ManifestFiles.Read plain
            Expect.isEmpty none.Stages "Figures.save without a manifest: one naming no stages"
            Expect.equal none.Commit (GitInfo.Of(Environment.CurrentDirectory).Commit) "but the commit"
        }

        test "PNG gets a tEXt chunk after IHDR, PDF an Info entry by an incremental update; both read back" {
            let m = Manifest.Create([ 7L ], [ 1L ], [], null)
            let png = tinyPng ()
            let stamped = ManifestFiles.Embed("x.png", png, m)
            let dir = tempDir "prov-bin"
            let file = Path.Combine(dir, "x.png")
            File.WriteAllBytes(file, stamped)
            Expect.equal (List.ofSeq (Manifest.Parse(ManifestFiles.Embedded file, "png")).Runs) [ 7L ] "the manifest reads back"
            // Chunks: IHDR first, then ours, then the rest; every CRC valid (CRC-32 of "IEND" is the well-known AE426082).
            Expect.equal (crc (Encoding.ASCII.GetBytes "IEND")) 0xAE426082u "the CRC is PNG's"
            let be32 (i: int) = (uint32 stamped[i] <<< 24) ||| (uint32 stamped[i + 1] <<< 16) ||| (uint32 stamped[i + 2] <<< 8) ||| uint32 stamped[i + 3]
            let rec chunks at acc =
                if at >= stamped.Length then List.rev acc
                else
                    let len = int (be32 at)
                    let body = stamped[at + 4 .. at + 7 + len]
                    Expect.equal (be32 (at + 8 + len)) (crc body) "chunk CRC"
                    chunks (at + 12 + len) (Encoding.ASCII.GetString(body, 0, 4) :: acc)
            Expect.equal (chunks 8 []) [ "IHDR"; "tEXt"; "IDAT"; "IEND" ] "chunk order"
            let pdf, oldXref = tinyPdf ()
            let out = ManifestFiles.Embed("x.pdf", pdf, m)
            Expect.sequenceEqual out[0 .. pdf.Length - 1] pdf "the original bytes stay as they were"
            let text = Encoding.Latin1.GetString out
            let tail = text.Substring pdf.Length
            Expect.stringContains tail $"/Prev {oldXref}" "the new trailer points at the old xref"
            Expect.stringContains tail "/Info 5 0 R" "a new Info object"
            Expect.stringContains tail "/Producer (tiny test)" "the old Info entries are kept"
            let startxref = int ((tail.Split("startxref\n")[1]).Split('\n')[0])
            Expect.stringStarts (text.Substring startxref) "xref\n5 1\n" "startxref points at the new xref section"
            let objAt = int (((text.Substring startxref).Split('\n')[2]).Substring(0, 10))
            Expect.stringStarts (text.Substring objAt) "5 0 obj" "the xref entry points at the object"
            let pdfFile = Path.Combine(dir, "x.pdf")
            File.WriteAllBytes(pdfFile, out)
            Expect.equal (List.ofSeq (ManifestFiles.Read pdfFile).Runs) [ 7L ] "read back from the Info dictionary"
        }

        test "research export: Parquet reads back with the store's rows; CSV and JSONL rows and headers" {
            let ws, _, r = fixture.Force()
            use store = new RunStore(ws)
            let out = tempDir "prov-export"
            let export what format =
                let file = Path.Combine(out, $"{what}.{format}")
                let code = Research.Cli.Commands.ExportCommand.Execute(Research.Cli.CliArgs.Parse([| what; "--format"; format; "--out"; file; "--workspace"; ws |], [||], Research.Cli.Commands.ExportCommand.Options))
                Expect.equal code 0 $"export {what} {format}"
                let m = Manifest.Parse(File.ReadAllText(file + ".provenance.json"), "sidecar")
                expectManifestOf r m $"{what}.{format} sidecar"
                Expect.equal (ManifestFiles.Unchanged(file, m)) (Nullable true) "its hash"
                file
            let metrics = store.AllMetrics() |> List.ofSeq
            Expect.isGreaterThan metrics.Length 2 "the store has metrics"
            let pq = export "metrics" "parquet"
            let rows =
                task {
                    let! reader = Parquet.ParquetReader.CreateAsync(pq)
                    try
                        let fields = reader.Schema.GetDataFields()
                        Expect.equal [ for f in fields -> f.Name ] [ "node_key"; "step"; "kind"; "name"; "value" ] "Parquet columns"
                        use g = reader.OpenRowGroupReader 0
                        let n = int g.RowCount
                        let keys, kinds, names = Array.zeroCreate<string> n, Array.zeroCreate<string> n, Array.zeroCreate<string> n
                        let steps, values = Array.zeroCreate<int64> n, Array.zeroCreate<float> n
                        do! g.ReadAsync(fields[0], Memory<string> keys, Nullable(), Threading.CancellationToken.None)
                        do! g.ReadAsync<int64>(fields[1], Memory<int64> steps, Nullable(), Threading.CancellationToken.None)
                        do! g.ReadAsync(fields[2], Memory<string> kinds, Nullable(), Threading.CancellationToken.None)
                        do! g.ReadAsync(fields[3], Memory<string> names, Nullable(), Threading.CancellationToken.None)
                        do! g.ReadAsync<float>(fields[4], Memory<float> values, Nullable(), Threading.CancellationToken.None)
                        Expect.isTrue (reader.CustomMetadata.ContainsKey ManifestFiles.Key) "the manifest in the footer"
                        return [ for i in 0 .. n - 1 -> MetricRecord(keys[i], steps[i], kinds[i], names[i], values[i]) ]
                    finally
                        reader.DisposeAsync().AsTask().Wait()
                }
                |> fun t -> t.Result
            Expect.equal rows metrics "the Parquet rows are the store's"
            File.Delete(pq + ".provenance.json")
            expectManifestOf r (ManifestFiles.Read pq) "Parquet without its sidecar: the footer's manifest"
            let evals = store.AllEvaluations().Count
            Expect.isGreaterThan evals 0 "the store has evaluations"
            let csv = File.ReadAllLines(export "evaluations" "csv")
            Expect.equal csv[0] "run,node_key,stage,suite,metric,value" "CSV header"
            Expect.equal (csv.Length - 1) evals "a CSV line per evaluation"
            let pretrainKey = r.Runs[0].Node("pretrain").Key
            Expect.stringStarts csv[1] $"{r.Runs[0].RunId},{pretrainKey},pretrain,finance," "first row"
            let jsonl = File.ReadAllLines(export "runs" "jsonl")
            Expect.equal jsonl.Length (store.Runs().Count) "a JSON line per run"
            use doc = JsonDocument.Parse jsonl[0]
            Expect.equal [ for p in doc.RootElement.EnumerateObject() -> p.Name ] [ "run"; "experiment"; "point"; "seed"; "status"; "started"; "finished" ] "JSONL keys"
            Expect.equal (doc.RootElement.GetProperty("seed").GetInt64()) 11L "the seed"
            throwsWith<Research.Cli.CliException> (fun () ->
                Research.Cli.Commands.ExportCommand.Execute(Research.Cli.CliArgs.Parse([| "metrics"; "--format"; "xlsx"; "--workspace"; ws |], [||], Research.Cli.Commands.ExportCommand.Options)) |> ignore)
                [ "xlsx"; "csv, jsonl, parquet" ] "an unknown format names the known ones"
        }

        test "research provenance: same for unchanged stages; the reason when code, a parent or data changed" {
            let _, world, r = fixture.Force()
            let m = Provenance.ofResult r
            let dir = tempDir "prov-check"
            let html = Figures.saveHtmlWith m dir "fig" (chart ())
            use out = new StringWriter()
            let code = Research.Cli.Commands.ProvenanceCommand.Execute(Research.Cli.CliArgs.Parse([| html |], [||], Research.Cli.Commands.ProvenanceCommand.Options), out)
            let text = out.ToString()
            Expect.equal code 0 $"exit 0 when every stage is the same; output: {text}"
            for n in r.Runs[0].Nodes do
                Expect.stringContains text $"{n.Name} ({n.Kind} {n.Key}): same" $"{n.Name} is the same"
            Expect.stringContains text $"commit     {m.Commit}" "prints the commit"
            Expect.stringContains text "data 'general' not re-read" "says which data it could not re-read"
            let verdicts codeVersion data = ProvenanceCheck.Check(m, codeVersion, data) |> Seq.map (fun v -> v.Name, (v.Status, List.ofSeq v.Reasons)) |> Map.ofSeq
            let adaptBumped = verdicts (Func<_, _>(fun k -> if k = "adapt" then StageCode.Version k + 1 else StageCode.Version k)) null
            Expect.equal adaptBumped["pretrain"] ("same", []) "pretrain untouched"
            let v = StageCode.Version "adapt"
            Expect.equal adaptBumped["a"] ("changed", [ $"code version of adapt {v} -> {v + 1}" ]) "adapt's code moved"
            let pretrainBumped = verdicts (Func<_, _>(fun k -> if k = "pretrain" then 9 else StageCode.Version k)) null
            Expect.equal (snd pretrainBumped["a"]) [ "parent 'pretrain' changed" ] "a child of a changed stage changes too"
            let otherData = verdicts null (Func<_, _>(fun name -> if name = "finance" then "0000" else world.General.Fingerprint))
            Expect.equal otherData["pretrain"] ("same", []) "general re-read, unchanged"
            Expect.equal otherData["a"] ("changed", [ "data 'finance' changed" ]) "changed data is named"
            let plain = Path.Combine(dir, "plain.txt")
            File.WriteAllText(plain, "no manifest")
            let e = try Research.Cli.Commands.ProvenanceCommand.Execute(Research.Cli.CliArgs.Parse([| plain |], [||], Research.Cli.Commands.ProvenanceCommand.Options), TextWriter.Null) |> ignore; None with e -> Some e
            let err = new StringWriter()
            Expect.equal (Research.Cli.CliErrors.Report(e.Value, err)) (Nullable 1) "a file without a manifest: exit 1"
            Expect.equal (err.ToString().TrimEnd().Split('\n').Length) 1 "one line"
            Expect.stringContains (err.ToString()) $"{plain}: no provenance manifest" "naming the file"
        }

        test "StoreResults reads the frame from the store: Results.frame's columns, the same evaluations" {
            let ws, _, r = fixture.Force()
            use store = new RunStore(ws)
            let frame = StoreResults.frame store
            Expect.equal (List.ofSeq frame.ColumnKeys) [ "Run"; "Point"; "Seed"; "Stage"; "Kind"; "Status"; "Source"; "Metric"; "Value" ] "columns"
            Expect.equal (List.ofSeq frame.ColumnKeys) (List.ofSeq (Results.frame r).ColumnKeys) "the same as Results.frame's"
            let rows = StoreResults.rows store
            Expect.isTrue (rows |> List.forall (fun x -> x.Seed = 11L)) "the seed"
            let evals (xs: (int64 * string * string * string * float) list) = xs |> List.sort
            let fromStore = rows |> List.filter (fun x -> x.Source <> "train" && x.Source <> "val") |> List.map (fun x -> x.Run, x.Stage, x.Source, x.Metric, x.Value)
            let fromResult = Results.rows r |> List.filter (fun x -> x.Source <> "train") |> List.map (fun x -> x.Run, x.Stage, x.Source, x.Metric, x.Value)
            Expect.equal (evals fromStore) (evals fromResult) "the evaluations of Results.frame"
            let loss = rows |> List.find (fun x -> x.Stage = "pretrain" && x.Source = "train" && x.Metric = "loss")
            let last = store.Metrics(r.Runs[0].Node("pretrain").Key) |> Seq.filter (fun m -> m.Kind = "train" && m.Name = "loss") |> Seq.maxBy (fun m -> m.Step)
            Expect.equal loss.Value last.Value "a training metric's last recorded value"
            Expect.equal (StoreResults.fromWorkspace ws).RowCount frame.RowCount "from the workspace path"
        }
    ]
