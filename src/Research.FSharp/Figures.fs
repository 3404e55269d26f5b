namespace Research

open System
open System.Diagnostics
open System.IO
open System.Text
open Plotly.NET
open Research.Runs

/// Finds (and when missing, installs) the headless Chromium that exports figures to PNG, SVG and PDF.
module Chromium =
    /// Candidate executables, in order: $RESEARCH_CHROMIUM, then Debian's and other common names.
    let private candidates () =
        [ match Environment.GetEnvironmentVariable "RESEARCH_CHROMIUM" with
          | null | "" -> ()
          | p -> p
          "/usr/bin/chromium"; "/usr/bin/chromium-browser"; "/usr/bin/google-chrome"; "/usr/bin/google-chrome-stable" ]

    /// The Chromium executable, if one is installed.
    let tryFind () = candidates () |> List.tryFind File.Exists

    /// The set-up script (scripts/setup/chromium.sh), shipped inside this assembly so that a
    /// built CLI finds it wherever it runs.
    let setupScript () =
        match Reflection.Assembly.GetExecutingAssembly().GetManifestResourceStream "chromium.sh" with
        | null -> failwith "Research.FSharp.dll lacks its embedded chromium.sh (scripts/setup/chromium.sh)"
        | s -> use r = new StreamReader(s) in r.ReadToEnd()

    let private installLock = obj ()

    /// Starts a process with redirected output and waits up to timeoutMs: exit code, stdout, stderr.
    let exec (psi: ProcessStartInfo) (timeoutMs: int) =
        psi.RedirectStandardOutput <- true
        psi.RedirectStandardError <- true
        match Process.Start psi with
        | null -> failwithf "could not start %s" psi.FileName
        | p ->
            use p = p
            let out = p.StandardOutput.ReadToEndAsync()
            let err = p.StandardError.ReadToEndAsync()
            if not (p.WaitForExit timeoutMs) then
                p.Kill true
                failwithf "%s did not finish within %d s" psi.FileName (timeoutMs / 1000)
            p.WaitForExit()
            p.ExitCode, out.Result, err.Result

    /// The Chromium executable; runs scripts/setup/chromium.sh (apt-get install chromium) when none is installed.
    let ensure () =
        lock installLock (fun () ->
            match tryFind () with
            | Some p -> p
            | None ->
                let script = Path.Combine(Path.GetTempPath(), $"research-chromium-{Guid.NewGuid():N}.sh")
                File.WriteAllText(script, setupScript ())
                try
                    let code, out, err = exec (ProcessStartInfo("sh", $"\"{script}\"")) 1_800_000
                    match tryFind () with
                    | Some path when code = 0 -> path
                    | _ ->
                        let tail (s: string) = if s.Length > 2000 then s.Substring(s.Length - 2000) else s
                        failwithf "no headless Chromium: scripts/setup/chromium.sh exited %d\n%s%s" code (tail out) (tail err)
                finally
                    File.Delete script)

    /// Runs Chromium headless on a page with extra flags, in a fresh profile; returns stdout.
    let run (extraArgs: string list) (page: string) =
        let exe = ensure ()
        let profile = Path.Combine(Path.GetTempPath(), $"research-chromium-profile-{Guid.NewGuid():N}")
        Directory.CreateDirectory profile |> ignore
        try
            let psi = ProcessStartInfo exe
            for a in [ "--headless"; "--no-sandbox"; "--disable-gpu"; "--disable-quic"; "--no-first-run"
                       "--disable-background-networking"; "--disable-component-update"; "--disable-sync"
                       "--disable-extensions"; "--hide-scrollbars"; "--mute-audio"; $"--user-data-dir={profile}" ] @ extraArgs do
                psi.ArgumentList.Add a
            psi.ArgumentList.Add(Uri(Path.GetFullPath page).AbsoluteUri)
            let code, out, err = exec psi 120_000
            if code <> 0 then failwithf "chromium exited %d on %s: %s" code page err
            out
        finally
            try Directory.Delete(profile, true) with _ -> ()

/// The files one figure was saved as.
type FigureFiles = { Html: string; Png: string; Svg: string; Pdf: string }

/// A line through sweep points: a function sampled over the points' x range, or given samples.
type Fit =
    | FitFunction of label: string * f: (float -> float)
    | FitSamples of label: string * points: (float * float) list

/// Paper figures as Plotly.NET charts (titles, axis titles, legends), saved as self-contained HTML
/// and exported to PNG, SVG and PDF through headless Chromium. See docs/figures.md.
module Figures =
    /// Pixel size of every exported figure (PNG, SVG, the PDF page).
    let width, height = 900, 520

    let private style (title: string) (xTitle: string) (yTitle: string) (chart: GenericChart) =
        chart
        |> Chart.withTitle title
        |> Chart.withXAxisStyle (TitleText = xTitle)
        |> Chart.withYAxisStyle (TitleText = yTitle)
        |> Chart.withLayoutStyle (ShowLegend = true)
        |> Chart.withSize (width, height)

    /// One training series: (step, value) points read from metrics.jsonl.
    let readMetric (metricsJsonl: string) (kind: string) (metric: string) =
        [ for o in MetricsLog.Read metricsJsonl do
            match o["kind"], o["step"], o[metric] with
            | NonNull k, NonNull step, NonNull v when string k = kind && v.GetValueKind() = Text.Json.JsonValueKind.Number ->
                float (step.GetValue<int64>()), v.GetValue<float>()
            | _ -> () ]

    /// Training curves: one line per stage (label, (step, value) points).
    let trainingCurves (title: string) (metric: string) (series: (string * (float * float) list) list) =
        if series.IsEmpty then invalidArg "series" "trainingCurves: no series to plot"
        series
        |> List.map (fun (name, pts) -> Chart.Line(x = List.map fst pts, y = List.map snd pts, Name = name, ShowMarkers = false))
        |> Chart.combine
        |> style title "step" metric

    /// Capability by stage: grouped bars, x = stage (first-seen order), one bar per capability.
    /// Takes generic (capability, stage, score) rows, so any capability report can feed it.
    let capabilityByStage (title: string) (scoreTitle: string) (rows: (string * string * float) list) =
        if rows.IsEmpty then invalidArg "rows" "capabilityByStage: no rows to plot"
        let stages = rows |> List.map (fun (_, s, _) -> s) |> List.distinct
        rows
        |> List.map (fun (c, _, _) -> c)
        |> List.distinct
        |> List.map (fun cap ->
            let score stage = rows |> List.tryFindBack (fun (c, s, _) -> c = cap && s = stage) |> Option.map (fun (_, _, v) -> v)
            let present = stages |> List.choose (fun s -> score s |> Option.map (fun v -> s, v))
            Chart.Column(values = List.map snd present, Keys = List.map fst present, Name = cap))
        |> Chart.combine
        |> style title "stage" scoreTitle
        |> Chart.withLayoutStyle (BarMode = StyleParam.BarMode.Group)

    /// Forgetting against domain gain: one labelled point per run / sweep point (label, gain, forgetting).
    let forgettingVsGain (title: string) (gainTitle: string) (forgettingTitle: string) (points: (string * float * float) list) =
        if points.IsEmpty then invalidArg "points" "forgettingVsGain: no points to plot"
        Chart.Point(
            x = (points |> List.map (fun (_, g, _) -> g)), y = (points |> List.map (fun (_, _, f) -> f)),
            Name = "runs", MultiText = (points |> List.map (fun (l, _, _) -> l)), TextPosition = StyleParam.TextPosition.TopCenter)
        |> style title gainTitle forgettingTitle

    /// Points of a fit: a function sampled at 50 points over [lo, hi], or the given samples sorted by x.
    let fitPoints (lo: float) (hi: float) (fit: Fit) =
        match fit with
        | FitFunction (_, f) -> [ for i in 0 .. 49 -> let x = lo + (hi - lo) * float i / 49.0 in x, f x ]
        | FitSamples (_, pts) -> List.sortBy fst pts

    /// Sweep curves: per series, the measured points as markers and, when given, a fitted line.
    let sweep (title: string) (xTitle: string) (yTitle: string) (series: (string * (float * float) list * Fit option) list) =
        if series.IsEmpty then invalidArg "series" "sweep: no series to plot"
        [ for name, pts, fit in series do
            yield Chart.Point(x = List.map fst pts, y = List.map snd pts, Name = name)
            match fit with
            | Some f ->
                let xs = List.map fst pts
                let label = match f with FitFunction (l, _) | FitSamples (l, _) -> l
                let line = fitPoints (List.min xs) (List.max xs) f
                yield Chart.Line(x = List.map fst line, y = List.map snd line, Name = $"{name}: {label}")
            | None -> () ]
        |> Chart.combine
        |> style title xTitle yTitle

    /// Merge-coefficient sweeps: score against coefficient, one line per method (method, coefficient, score).
    let mergeSweep (title: string) (scoreTitle: string) (rows: (string * float * float) list) =
        if rows.IsEmpty then invalidArg "rows" "mergeSweep: no rows to plot"
        rows
        |> List.map (fun (m, _, _) -> m)
        |> List.distinct
        |> List.map (fun m ->
            let pts = rows |> List.filter (fun (x, _, _) -> x = m) |> List.map (fun (_, c, s) -> c, s) |> List.sortBy fst
            Chart.Line(x = List.map fst pts, y = List.map snd pts, Name = m, ShowMarkers = true))
        |> Chart.combine
        |> style title "merge coefficient" scoreTitle

    /// plotly.min.js as shipped inside Plotly.NET (so pages need no network).
    let plotlyJs =
        lazy
            let asm = typeof<GenericChart>.Assembly
            let name =
                asm.GetManifestResourceNames()
                |> Array.tryFind (fun n -> n.StartsWith "Plotly.NET.plotly-" && n.EndsWith ".min.js")
                |> Option.defaultWith (fun () -> failwith "Plotly.NET.dll lacks its embedded plotly.min.js")
            use s = asm.GetManifestResourceStream name |> Option.ofObj |> Option.defaultWith (fun () -> failwithf "no resource %s" name)
            use r = new StreamReader(s)
            // A literal "</script" would end the inline <script> element early.
            r.ReadToEnd().Replace("</script", "<\\/script")

    let private htmlEscape (s: string) = Net.WebUtility.HtmlEncode s

    let private titleOf (chart: GenericChart) =
        let layout = GenericChart.getLayout chart
        match layout.TryGetTypedPropertyValue<Title> "title" with
        | Some t -> t.TryGetTypedPropertyValue<string> "text" |> Option.defaultValue "figure"
        | None -> "figure"

    /// A self-contained page (plotly.js inline, no external script) that draws the chart into div#figure,
    /// then runs `after` (JavaScript, with `gd` bound to the div).
    let page (chart: GenericChart) (after: string) =
        let fig = (GenericChart.toFigureJson chart).Replace("</", "<\\/")
        $"""<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>{htmlEscape (titleOf chart)}</title>
<style>@page {{ size: {width}px {height}px; margin: 0 }} html, body {{ margin: 0; padding: 0; background: white }}</style>
<script>{plotlyJs.Value}</script>
</head>
<body>
<div id="figure" style="width:{width}px;height:{height}px"></div>
<script>
var fig = {fig};
var gd = document.getElementById('figure');
Plotly.newPlot(gd, fig.data, fig.layout, {{ responsive: false, displaylogo: false }}).then(function () {{ {after} }});
</script>
</body>
</html>
"""

    /// The chart as a self-contained HTML page.
    let toHtml (chart: GenericChart) = page chart ""

    let private exportJs =
        """Promise.all([Plotly.toImage(gd, { format: 'svg', width: WIDTH, height: HEIGHT }),
                     Plotly.toImage(gd, { format: 'png', width: WIDTH, height: HEIGHT, scale: 2 })])
  .then(function (urls) {
    var svg = decodeURIComponent(urls[0].substring(urls[0].indexOf(',') + 1));
    var pre = document.createElement('pre');
    pre.id = 'research-export';
    pre.style.display = 'none';
    pre.textContent = 'SVG:' + btoa(unescape(encodeURIComponent(svg))) + ':PNG:' + urls[1].substring(urls[1].indexOf(',') + 1) + ':END';
    document.body.appendChild(pre);
  }, function (e) {
    var pre = document.createElement('pre'); pre.id = 'research-export'; pre.style.display = 'none'; pre.textContent = 'ERROR:' + e;
    document.body.appendChild(pre);
  });"""

    let private between (text: string) (a: string) (b: string) =
        let i = text.IndexOf a
        if i < 0 then None
        else
            let j = text.IndexOf(b, i + a.Length)
            if j < 0 then None else Some(text.Substring(i + a.Length, j - i - a.Length))

    /// Writes name.html (self-contained), name.png, name.svg and name.pdf into dir (each atomically), each with the
    /// provenance manifest inside it and beside it (name.png.provenance.json...; docs/provenance.md).
    let saveWith (provenance: Manifest) (dir: string) (name: string) (chart: GenericChart) : FigureFiles =
        Directory.CreateDirectory dir |> ignore
        let file ext = Path.Combine(Path.GetFullPath dir, name + ext)
        let html = toHtml chart
        ManifestFiles.WriteText(file ".html", html, provenance)
        let tmp = Path.Combine(Path.GetTempPath(), $"research-figure-{Guid.NewGuid():N}")
        Directory.CreateDirectory tmp |> ignore
        try
            // One Chromium run: SVG and PNG from Plotly.toImage inside the page (their data come back
            // through --dump-dom, in a hidden element), and the PDF printed from the same page
            // (page size = figure size through @page; no header or footer).
            let exportPage = Path.Combine(tmp, "export.html")
            File.WriteAllText(exportPage, page chart (exportJs.Replace("WIDTH", string width).Replace("HEIGHT", string height)))
            let pdf = Path.Combine(tmp, "figure.pdf")
            let dom = Chromium.run [ "--virtual-time-budget=10000"; "--no-pdf-header-footer"; $"--print-to-pdf={pdf}"; "--dump-dom" ] exportPage
            let exported =
                between dom "id=\"research-export\"" "</pre>"
                |> Option.map (fun t -> Net.WebUtility.HtmlDecode(t.Substring(t.IndexOf '>' + 1)) |> string)
            match exported with
            | Some text when text.StartsWith "ERROR:" -> failwithf "Plotly.toImage failed for %s: %s" name (text.Substring 6)
            | Some text when text.StartsWith "SVG:" && text.Contains ":PNG:" ->
                let svg, png = between text "SVG:" ":PNG:" |> Option.get, between text ":PNG:" ":END" |> Option.get
                ManifestFiles.Write(file ".svg", Convert.FromBase64String svg, provenance)
                ManifestFiles.Write(file ".png", Convert.FromBase64String png, provenance)
            | _ -> failwithf "chromium rendered no SVG/PNG export for %s (plotly did not finish within the time budget?)" name
            if not (File.Exists pdf) then failwithf "chromium wrote no PDF for %s" name
            ManifestFiles.Write(file ".pdf", File.ReadAllBytes pdf, provenance)
        finally
            try Directory.Delete(tmp, true) with _ -> ()
        { Html = file ".html"; Png = file ".png"; Svg = file ".svg"; Pdf = file ".pdf" }

    /// Figures.saveWith with a manifest that names no runs (Provenance.here ()).
    let save (dir: string) (name: string) (chart: GenericChart) : FigureFiles = saveWith (Manifest.Here()) dir name chart

    /// Writes only name.html (no Chromium needed), with the provenance manifest inside it and beside it.
    let saveHtmlWith (provenance: Manifest) (dir: string) (name: string) (chart: GenericChart) =
        Directory.CreateDirectory dir |> ignore
        let path = Path.Combine(Path.GetFullPath dir, name + ".html")
        ManifestFiles.WriteText(path, toHtml chart, provenance)
        path

    /// Figures.saveHtmlWith with a manifest that names no runs.
    let saveHtml (dir: string) (name: string) (chart: GenericChart) = saveHtmlWith (Manifest.Here()) dir name chart
