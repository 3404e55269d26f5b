/// The paper figure style, checked on the figure JSON (no Chromium).
module Research.Tests.PaperStyleTests

open Expecto
open Plotly.NET
open Newtonsoft.Json.Linq
open Research

let private json (chart: GenericChart) = GenericChart.toFigureJson chart |> JObject.Parse

let private bars () =
    Figures.capabilityByStage "Accuracy by stage" "accuracy (fraction correct)" [ "finance", "base", 0.4; "finance", "tuned", 0.7; "general", "base", 0.6 ]

[<Tests>]
let tests =
    testList "PaperStyle" [
        testCase "column and full width at 96 px per inch, white, Okabe-Ito, legend outside, titles kept" <| fun _ ->
            for w, (px, py) in [ Column, (316, 230); FullWidth, (652, 268) ] do
                let j = bars () |> PaperStyle.apply w |> json
                let layout = j.["layout"]
                Expect.equal (int layout.["width"], int layout.["height"]) (px, py) $"{w}: size"
                Expect.equal (string layout.["paper_bgcolor"], string layout.["plot_bgcolor"]) ("#FFFFFF", "#FFFFFF") "white"
                Expect.sequenceEqual [ for c in layout.["colorway"] -> string c ] PaperStyle.palette "colour-blind-safe palette"
                Expect.isGreaterThan (float layout.["legend"].["x"]) 1.0 "legend right of the plot area"
                Expect.equal (string layout.["xaxis"].["title"].["text"]) "stage" "x title kept"
                Expect.equal (string layout.["yaxis"].["title"].["text"]) "accuracy (fraction correct)" "y title kept"
                Expect.equal (Figures.sizeOf (bars () |> PaperStyle.apply w)) (px, py) "the export reads the size from the layout"
            Expect.equal (Figures.pngScale (bars () |> PaperStyle.apply FullWidth)) (300.0 / 96.0) "300 dpi PNG at paper sizes"
            Expect.equal (Figures.pngScale (bars ())) 2.0 "screen figures stay at 2x"

        testCase "a figure without an axis title is refused" <| fun _ ->
            let untitled = Chart.Line(x = [ 1.0; 2.0 ], y = [ 3.0; 4.0 ])
            Expect.throwsT<System.ArgumentException> (fun () -> PaperStyle.apply Column untitled |> ignore) "no titles"
    ]
