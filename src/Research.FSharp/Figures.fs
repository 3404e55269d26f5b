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

/// The width of a figure in a two-column paper: one column (3.3 in) or the full text width (6.8 in).
type PaperWidth =
    | Column
    | FullWidth

/// A figure style a venue takes without rework: white background, the column or full-width size at 96 px per inch
/// (exports scale it to 300 dpi), the Okabe-Ito colour-blind-safe palette, a serif-free 8 pt font (Chromium embeds
/// the fonts it uses in the PDF), the legend outside the data, and axis titles required (with their units).
module PaperStyle =
    /// Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision deficiencies.
    let palette = [ "#0072B2"; "#E69F00"; "#009E73"; "#D55E00"; "#CC79A7"; "#56B4E9"; "#F0E442"; "#000000" ]

    /// Pixels per inch of the layout (CSS), and the export scale that makes 300 dpi of it.
    let pixelsPerInch, exportScale = 96.0, 300.0 / 96.0

    /// (width, height) in pixels: 3.3 x 2.4 in for a column, 6.8 x 2.8 in for the full width.
    let size (w: PaperWidth) =
        match w with
        | Column -> int (3.3 * pixelsPerInch), int (2.4 * pixelsPerInch)
        | FullWidth -> int (6.8 * pixelsPerInch), int (2.8 * pixelsPerInch)

    let private axisTitle (chart: GenericChart) (axis: string) =
        let layout = GenericChart.getLayout chart
        match layout.TryGetTypedPropertyValue<LayoutObjects.LinearAxis> axis with
        | Some a ->
            match a.TryGetTypedPropertyValue<Title> "title" with
            | Some t -> t.TryGetTypedPropertyValue<string> "text" |> Option.defaultValue ""
            | None -> ""
        | None -> ""

    /// The chart in paper style; fails when an axis has no title (a paper's axes say what and in which unit).
    let apply (w: PaperWidth) (chart: GenericChart) =
        for axis in [ "xaxis"; "yaxis" ] do
            if String.IsNullOrWhiteSpace(axisTitle chart axis) then
                invalidArg "chart" $"PaperStyle.apply: the {axis} has no title; give it one with its unit (Chart.withXAxisStyle / withYAxisStyle)"
        let font = Font.init (Family = StyleParam.FontFamily.Arial, Size = 8.0, Color = Color.fromString "#000000")
        let axis = LayoutObjects.LinearAxis.init (ShowLine = true, LineColor = Color.fromString "#000000", Ticks = StyleParam.TickOptions.Outside,
                                                  ShowGrid = false, ZeroLine = false, Mirror = StyleParam.Mirror.False)
        let pw, ph = size w
        chart
        |> Chart.withSize (pw, ph)
        |> Chart.withLayoutStyle (PaperBGColor = Color.fromString "#FFFFFF", PlotBGColor = Color.fromString "#FFFFFF", Font = font,
                                  Colorway = Color.fromColors (palette |> List.map Color.fromString),
                                  Margin = LayoutObjects.Margin.init (Left = 44, Right = 8, Top = 24, Bottom = 36))
        |> Chart.withXAxis (axis, StyleParam.SubPlotId.XAxis 1)
        |> Chart.withYAxis (axis, StyleParam.SubPlotId.YAxis 1)
        |> Chart.withLegendStyle (X = 1.02, Y = 1.0, XAnchor = StyleParam.XAnchorPosition.Left, YAnchor = StyleParam.YAnchorPosition.Top,
                                  BorderWidth = 0.0)

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

    /// Error bars from a mean to its interval's bounds; none where the bounds are NaN (one seed).
    let private errorBars (means: float list) (lower: float list) (upper: float list) =
        let plus = List.map2 (fun m u -> if Double.IsNaN u then 0.0 else u - m) means upper
        let minus = List.map2 (fun m l -> if Double.IsNaN l then 0.0 else m - l) means lower
        TraceObjects.Error.init (Symmetric = false, Array = plus, Arrayminus = minus, Visible = true)

    /// Capability by stage over seeds: grouped bars of the mean with error bars to the 95% interval, from `Results.summary`
    /// rows (capability = source, or source and metric when several metrics are drawn). The title says how many seeds
    /// and which interval ("1 seed, no interval" when there is one).
    let capabilityByStageOverSeeds (title: string) (scoreTitle: string) (rows: SummaryRow list) =
        if rows.IsEmpty then invalidArg "rows" "capabilityByStageOverSeeds: no rows to plot"
        let stages = rows |> List.map (fun r -> r.Stage) |> List.distinct
        let caption = rows |> List.map (fun r -> r.Interval) |> List.distinct |> String.concat "; "
        rows
        |> List.map (fun r -> r.Source)
        |> List.distinct
        |> List.map (fun cap ->
            let present = stages |> List.choose (fun st -> rows |> List.tryFindBack (fun r -> r.Source = cap && r.Stage = st))
            Chart.Column(values = (present |> List.map (fun r -> r.Mean)), Keys = (present |> List.map (fun r -> r.Stage)), Name = cap)
            |> Chart.withYError (errorBars (present |> List.map (fun r -> r.Mean)) (present |> List.map (fun r -> r.Lower)) (present |> List.map (fun r -> r.Upper))))
        |> Chart.combine
        |> style $"{title} ({caption})" "stage" scoreTitle
        |> Chart.withLayoutStyle (BarMode = StyleParam.BarMode.Group)

    /// Sweep curves over seeds: per series, the mean at each x with error bars to its interval and a line through the
    /// means: (name, (x, mean, lower, upper) points). `caption` says over what (e.g. interval.Describe()).
    let sweepOverSeeds (title: string) (xTitle: string) (yTitle: string) (caption: string) (series: (string * (float * float * float * float) list) list) =
        if series.IsEmpty then invalidArg "series" "sweepOverSeeds: no series to plot"
        [ for name, pts in series do
            let pts = List.sortBy (fun (x, _, _, _) -> x) pts
            let xs, ms = pts |> List.map (fun (x, _, _, _) -> x), pts |> List.map (fun (_, m, _, _) -> m)
            yield Chart.Line(x = xs, y = ms, Name = name, ShowMarkers = true)
                  |> Chart.withYError (errorBars ms (pts |> List.map (fun (_, _, l, _) -> l)) (pts |> List.map (fun (_, _, _, u) -> u))) ]
        |> Chart.combine
        |> style $"{title} ({caption})" xTitle yTitle

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

    /// How a pairs stage chose its preference pairs, from its run-store rows (`RunStore.Metrics key`, kind "candidates"):
    /// every candidate's judge score against its prompt, the chosen (best) and rejected (worst) of each kept pair marked;
    /// a prompt with neither marked gave no pair (all tied within min_gap, or empty).
    let pairSelection (title: string) (rows: MetricRecord seq) =
        let candidates =
            rows |> Seq.filter (fun m -> m.Kind = "candidates") |> Seq.groupBy (fun m -> m.Step) |> Seq.sortBy fst
            |> Seq.map (fun (_, ms) -> ms |> Seq.map (fun m -> m.Name, m.Value) |> Map.ofSeq) |> Seq.toList
        if candidates.IsEmpty then invalidArg "rows" "pairSelection: no \"candidates\" rows (give the metrics of a pairs stage)"
        let series (name: string) (keep: Map<string, float> -> bool) =
            let c = candidates |> List.filter keep
            Chart.Point(x = (c |> List.map (fun m -> m["prompt"])), y = (c |> List.map (fun m -> m["score"])), Name = name)
        [ series "candidate" (fun m -> m["chosen"] = 0.0 && m["rejected"] = 0.0)
          series "chosen" (fun m -> m["chosen"] = 1.0)
          series "rejected" (fun m -> m["rejected"] = 1.0) ]
        |> Chart.combine
        |> style title "prompt" "judge score"

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

    /// The chart's size from its layout (`Chart.withSize`, `PaperStyle.apply`), else the default 900 x 520.
    let sizeOf (chart: GenericChart) =
        let layout = GenericChart.getLayout chart
        let get (k: string) d = layout.TryGetTypedPropertyValue<int> k |> Option.defaultValue d
        get "width" width, get "height" height

    /// The PNG export's scale: 300 dpi for figures up to a paper's full width (6.8 in), else 2x.
    let pngScale (chart: GenericChart) =
        if float (fst (sizeOf chart)) <= 6.8 * PaperStyle.pixelsPerInch then PaperStyle.exportScale else 2.0

    /// A self-contained page (plotly.js inline, no external script) that draws the chart into div#figure,
    /// then runs `after` (JavaScript, with `gd` bound to the div).
    let page (chart: GenericChart) (after: string) =
        let fig = (GenericChart.toFigureJson chart).Replace("</", "<\\/")
        let w, h = sizeOf chart
        $"""<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>{htmlEscape (titleOf chart)}</title>
<style>@page {{ size: {w}px {h}px; margin: 0 }} html, body {{ margin: 0; padding: 0; background: white }}</style>
<script>{plotlyJs.Value}</script>
</head>
<body>
<div id="figure" style="width:{w}px;height:{h}px"></div>
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
                     Plotly.toImage(gd, { format: 'png', width: WIDTH, height: HEIGHT, scale: SCALE })])
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
            File.WriteAllText(exportPage, page chart (exportJs.Replace("WIDTH", string (fst (sizeOf chart))).Replace("HEIGHT", string (snd (sizeOf chart))).Replace("SCALE", (pngScale chart).ToString(Globalization.CultureInfo.InvariantCulture))))
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
