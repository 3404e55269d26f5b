/// Classic UDA: each loss and metric against hand-computed values on small fixed tensors, the classification head's
/// pooling and its Hugging Face layout, the JSONL reader's errors and the shift benchmark's cue rule.
module Research.Tests.UdaTests

open System.IO
open System.Text.Json.Nodes
open Expecto
open TorchSharp
open Research.Data
open Research.Models
open Research.Stages.Uda
open Research.Tests.TestUtil

let private t2 (rows: float list list) = torch.tensor(array2D rows, dtype = torch.float64)
let private t (xs: float list) = torch.tensor(List.toArray xs, dtype = torch.float64)
let private scalar (x: torch.Tensor) = x.``to``(torch.float64).item<float>()
let private values (x: torch.Tensor) = x.``to``(torch.float64).data<float>().ToArray() |> List.ofArray
let private close (tol: float) (actual: float) (expected: float) (what: string) =
    Expect.isTrue (abs (actual - expected) <= tol) $"{what}: {actual} vs {expected}"
let private closeAll tol (actual: float list) (expected: float list) what =
    Expect.equal actual.Length expected.Length $"{what}: length"
    List.iteri2 (fun i a e -> close tol a e $"{what}[{i}]") actual expected

let private writeLines (lines: string list) =
    let f = Path.Combine(tempDir "uda-data", "data.jsonl")
    File.WriteAllLines(f, lines)
    f

[<Tests>]
let tests =
    testList "Uda" [
        testCase "gradient reversal: the identity forward, -lambda times the gradient backward; DANN's schedule" <| fun _ ->
            use x = torch.tensor([| 1.0; 2.0 |], dtype = torch.float64, requires_grad = true)
            use y = UdaLosses.GradientReversal(x, 0.5)
            Expect.equal (values y) [ 1.0; 2.0 ] "exactly x"
            use s = (y * t [ 1.0; 3.0 ]).sum()
            s.backward()
            closeAll 1e-15 (values x.grad) [ -0.5; -1.5 ] "gradient reversed and scaled"
            close 1e-15 (UdaLosses.DannLambda 0.0) 0.0 "lambda(0)"
            // 2 / (1 + e^-5) - 1 and 2 / (1 + e^-10) - 1.
            close 1e-12 (UdaLosses.DannLambda 0.5) 0.9866142981514305 "lambda(0.5)"
            close 1e-12 (UdaLosses.DannLambda 1.0) 0.9999092042625951 "lambda(1)"
            throwsWith<System.ArgumentOutOfRangeException> (fun () -> UdaLosses.DannLambda 1.5 |> ignore) [ "[0, 1]" ] "progress past 1"

        testCase "domain discriminator loss: BCE with source 0 and target 1, averaged over both" <| fun _ ->
            close 1e-12 (scalar (UdaLosses.DomainLoss(t [ 0.0 ], t [ 0.0 ]))) (log 2.0) "chance"
            // log(1 + e^2) = 2.126928011, log(1 + e^1) = 1.313261687; mean 1.720094849.
            close 1e-9 (scalar (UdaLosses.DomainLoss(t [ 2.0 ], t [ -1.0 ]))) 1.720094849 "wrong on both"

        testCase "CORAL: covariances [[2,0],[0,0]] and [[0,0],[0,2]] differ by 8 in squared Frobenius norm, / (4 d^2) = 0.5" <| fun _ ->
            use s = t2 [ [ 0.0; 0.0 ]; [ 2.0; 0.0 ] ]
            use tg = t2 [ [ 0.0; 0.0 ]; [ 0.0; 2.0 ] ]
            closeAll 1e-12 (values (UdaLosses.Covariance s)) [ 2.0; 0.0; 0.0; 0.0 ] "unbiased covariance"
            close 1e-12 (scalar (UdaLosses.Coral(s, tg))) 0.5 "CORAL"
            close 1e-12 (scalar (UdaLosses.Coral(s, s))) 0.0 "same features"
            throwsWith<System.ArgumentException> (fun () -> UdaLosses.Covariance(t2 [ [ 1.0; 2.0 ] ]) |> ignore) [ "at least 2 rows" ] "one row"

        testCase "multi-kernel MMD: one point against another, one kernel and two; bandwidth from the mean squared distance" <| fun _ ->
            use s = t2 [ [ 0.0 ] ]
            use tg = t2 [ [ 1.0 ] ]
            // K(s,s) = K(t,t) = 1; K(s,t) = e^-1 (gamma 1), (e^-1 + e^-1/2)/2 (gammas 1, 2).
            close 1e-12 (scalar (UdaLosses.MultiKernelMmd(s, tg, [| 1.0 |]))) (2.0 - 2.0 * exp -1.0) "one kernel"
            close 1e-12 (scalar (UdaLosses.MultiKernelMmd(s, tg, [| 1.0; 2.0 |]))) (2.0 - (exp -1.0 + exp -0.5)) "two kernels"
            close 1e-12 (scalar (UdaLosses.MultiKernelMmd(t2 [ [ 0.0 ]; [ 1.0 ] ], t2 [ [ 0.0 ]; [ 1.0 ] ], [| 1.0 |]))) 0.0 "same sample"
            close 1e-12 (UdaLosses.MeanSquaredDistance(s, t2 [ [ 2.0 ] ])) 4.0 "mean squared distance of distinct pairs"
            throwsWith<System.ArgumentException> (fun () -> UdaLosses.MultiKernelMmd(s, tg, [| 0.0 |]) |> ignore) [ "bandwidth must be > 0" ] "zero bandwidth"

        testCase "M3SDA moment distance: sources [1,3] and [0,0] against target [1,1], orders 1 and 2" <| fun _ ->
            // k = 1: means 2, 0 vs 1: (1 + 1)/2 + |2 - 0| = 3; k = 2: E[x^2] 5, 0 vs 1: (4 + 1)/2 + |5 - 0| = 7.5.
            let s1, s2, tg = t2 [ [ 1.0 ]; [ 3.0 ] ], t2 [ [ 0.0 ]; [ 0.0 ] ], t2 [ [ 1.0 ]; [ 1.0 ] ]
            close 1e-12 (scalar (UdaLosses.MomentDistance([| s1; s2 |], tg, 1))) 3.0 "order 1"
            close 1e-12 (scalar (UdaLosses.MomentDistance([| s1; s2 |], tg, 2))) 10.5 "order 2"
            close 1e-12 (scalar (UdaLosses.MomentDistance([| s1 |], tg, 1))) 1.0 "one source: no pair term"
            close 1e-12 (scalar (UdaLosses.MomentDistance([| t2 [ [ 3.0; 4.0 ] ] |], t2 [ [ 0.0; 0.0 ] ], 1))) 5.0 "the L2 norm over features"

        testCase "entropy, pseudo-labels and the masked cross-entropy" <| fun _ ->
            // p = (3/4, 1/4): -(3/4 ln 3/4 + 1/4 ln 1/4) = 0.5623351446.
            closeAll 1e-9 (values (UdaLosses.Entropy(t2 [ [ 0.0; 0.0 ]; [ log 3.0; 0.0 ] ]))) [ log 2.0; 0.5623351446 ] "entropy"
            let struct (labels, mask) = UdaLosses.PseudoLabels(t2 [ [ 0.9; 0.1 ]; [ 0.4; 0.6 ] ], torch.tensor 0.8)
            Expect.equal (labels.data<int64>().ToArray()) [| 0L; 1L |] "argmax"
            Expect.equal (values mask) [ 1.0; 0.0 ] "only the confident row"
            use logits = t2 [ [ 0.0; 0.0 ]; [ log 3.0; 0.0 ] ]
            use y = torch.tensor([| 1L; 0L |])
            close 1e-9 (scalar (UdaLosses.MaskedCrossEntropy(logits, y, t [ 1.0; 1.0 ]))) (log 2.0 - log 0.75) "both rows"
            close 1e-9 (scalar (UdaLosses.MaskedCrossEntropy(logits, y, t [ 0.0; 1.0 ]))) (-(log 0.75)) "masked row left out"

        testCase "AdaMatch: distribution alignment, relative threshold, warm-up" <| fun _ ->
            // Target mean (0.7, 0.3), source mean (0.5, 0.5): rows times (5/7, 5/3), renormalised.
            let aligned = UdaLosses.DistributionAlignment(t2 [ [ 0.5; 0.5 ]; [ 0.9; 0.1 ] ], t2 [ [ 0.5; 0.5 ]; [ 0.5; 0.5 ] ])
            closeAll 1e-9 (values aligned) [ 0.3; 0.7; 0.642857142857 / 0.809523809524; 0.166666666667 / 0.809523809524 ] "aligned"
            close 1e-12 (scalar (UdaLosses.RelativeThreshold(t2 [ [ 0.9; 0.1 ]; [ 0.6; 0.4 ] ], 0.9))) 0.675 "tau x mean top probability"
            close 1e-12 (UdaLosses.AdaMatchWarmup(0L, 8L)) 0.0 "start"
            close 1e-12 (UdaLosses.AdaMatchWarmup(1L, 8L)) (0.5 - cos (System.Math.PI / 4.0) / 2.0) "an eighth"
            close 1e-12 (UdaLosses.AdaMatchWarmup(2L, 8L)) 0.5 "a quarter"
            close 1e-12 (UdaLosses.AdaMatchWarmup(6L, 8L)) 1.0 "past half: full weight"

        testCase "accuracy, macro-F1, ECE with its bins, ATC's threshold and prediction, average confidence" <| fun _ ->
            let pred, gold = [| 0; 1; 1; 0 |], [| 0; 1; 0; 0 |]
            close 1e-12 (ClassificationMetrics.Accuracy(pred, gold)) 0.75 "accuracy"
            // class 0: TP 2, FN 1 -> 4/5; class 1: TP 1, FP 1 -> 2/3.
            close 1e-12 (ClassificationMetrics.MacroF1(pred, gold, 2)) ((0.8 + 2.0 / 3.0) / 2.0) "macro-F1"
            // bin (0, .5]: {0.3 right}: |1 - 0.3| x 1/4; bin (.5, 1]: {0.9, 0.8 right, 0.6 wrong}: |2/3 - 2.3/3| x 3/4.
            close 1e-12 (ClassificationMetrics.ExpectedCalibrationError([| 0.9; 0.8; 0.6; 0.3 |], [| true; true; false; true |], 2)) 0.25 "ECE, 2 bins"
            close 1e-12 (ClassificationMetrics.ExpectedCalibrationError([| 0.5 |], [| true |], 2)) 0.5 "0.5 falls in the first bin (0, 0.5]"
            // Source error 1/4 of 4 -> k = 1 -> t = (0.1 + 0.2) / 2.
            let th = ClassificationMetrics.AtcThreshold([| 0.3; 0.1; 0.4; 0.2 |], [| true; false; true; true |])
            close 1e-12 th 0.15 "threshold"
            close 1e-12 (ClassificationMetrics.AtcPredict([| 0.05; 0.5; 0.12; 0.9 |], th)) 0.5 "share above it"
            Expect.equal (ClassificationMetrics.AtcThreshold([| 0.2; 0.1 |], [| true; true |])) -infinity "no source error: every target example counts"
            close 1e-12 (ClassificationMetrics.AverageConfidence([| 0.9; 0.5 |])) 0.7 "average confidence"
            close 1e-12 (ClassificationMetrics.Score([| 0.5; 0.5 |], ConfidenceScore.NegativeEntropy)) (-(log 2.0)) "negative entropy"
            close 1e-12 (ClassificationMetrics.Score([| 0.2; 0.8 |], ConfidenceScore.MaxProbability)) 0.8 "max probability"

        testCase "strong views: token dropout and span masking never touch BOS or the pooled last token" <| fun _ ->
            let row = [| 256; 1; 2; 3; 4; 9 |]
            Expect.equal (ClassifyBatch.Strong(row, 0.0, 0.0, 258, Rng 1L)) row "no augmentation"
            Expect.equal (ClassifyBatch.Strong(row, 0.9999, 0.0, 258, Rng 1L)) [| 256; 9 |] "all inner tokens dropped"
            let masked = ClassifyBatch.Strong(row, 0.0, 0.5, 258, Rng 3L)
            Expect.equal masked.Length row.Length "span masking keeps the length"
            Expect.equal (masked |> Array.filter ((=) 258) |> Array.length) 2 "round(0.5 x 4) tokens masked"
            Expect.equal (masked[0], masked[5]) (256, 9) "ends kept"

        testCase "pooling: the last non-pad token per row, as transformers finds it" <| fun _ ->
            use ids = torch.tensor(array2D [ [ 5L; 6L; 258L; 258L ]; [ 5L; 6L; 7L; 8L ]; [ 258L; 258L; 258L; 258L ] ])
            Expect.equal ((SequenceClassification.LastNonPad(ids, 258)).data<int64>().ToArray()) [| 1L; 3L; 0L |] "rightmost non-pad"
            Expect.equal ((SequenceClassification.LastNonPad(ids, System.Nullable())).data<int64>().ToArray()) [| 3L; 3L; 3L |] "no pad id: last"
            use hidden = torch.arange(24, dtype = torch.float64).view(2L, 3L, 4L)
            Expect.equal (values (SequenceClassification.Pool(hidden, torch.tensor([| 2L; 0L |])))) [ 8.0; 9.0; 10.0; 11.0; 12.0; 13.0; 14.0; 15.0 ] "gathered rows"

        testCase "the head in HF layout: score.weight [labels, hidden], num_labels / id2label / label2id, saved and loaded; added to a language model" <| fun _ ->
            let dir = tempDir "uda-head"
            let lm = Path.Combine(dir, "lm")
            (use m = microModel 3L in Checkpoint.Save(lm, m, ByteTokenizer.Instance))
            let struct (model, _) = SequenceClassification.Load(lm, [| "negative"; "positive" |], 5L)
            use model = model
            Expect.equal (model.ScoreHead.weight.shape) [| 2L; 32L |] "score.weight [num_labels, hidden]"
            let cls = Path.Combine(dir, "cls")
            Checkpoint.Save(cls, model, ByteTokenizer.Instance)
            let config = JsonNode.Parse(File.ReadAllText(Path.Combine(cls, "config.json")))
            Expect.equal (config["num_labels"].GetValue<int>()) 2 "num_labels"
            Expect.equal (config["id2label"].["1"].GetValue<string>()) "positive" "id2label"
            Expect.equal (config["label2id"].["negative"].GetValue<int>()) 0 "label2id"
            let keys = Safetensors.LoadDirectory cls
            Expect.isTrue (keys.ContainsKey "score.weight") "score.weight saved under its HF name"
            for v in keys.Values do v.Dispose()
            let struct (back, _) = Checkpoint.Load cls
            use back = back
            Expect.equal (maxAbsDiff back.ScoreHead.weight model.ScoreHead.weight) 0.0 "the head loads back"
            use ids = ids [ 256L; 72L; 105L ]
            use f1 = SequenceClassification.Features(back, ids)
            use f2 = SequenceClassification.Features(model, ids)
            Expect.equal (maxAbsDiff f1 f2) 0.0 "same body"
            throwsWith<InvalidDataException> (fun () -> SequenceClassification.Load(cls, [| "a"; "b"; "c" |], 1L) |> ignore) [ "cls"; "negative, positive"; "a, b, c" ] "other labels"
            // A transformers classifier's config writes no num_labels: id2label's size and the architecture say it.
            let hf = JsonNode.Parse(File.ReadAllText(Path.Combine(lm, "config.json"))).AsObject()
            hf["architectures"] <- JsonArray(JsonValue.Create "LlamaForSequenceClassification")
            hf["id2label"] <- JsonNode.Parse """{"0": "x", "1": "y", "2": "z"}"""
            Expect.equal (ModelConfig.FromJson(hf, null).NumLabels) (System.Nullable 3) "num_labels from id2label"
            hf["architectures"] <- JsonArray(JsonValue.Create "LlamaForCausalLM")
            Expect.isFalse (ModelConfig.FromJson(hf, null).NumLabels.HasValue) "a causal LM's stray id2label builds no head"

        testCase "classification JSONL: errors name the file and line" <| fun _ ->
            let ok = writeLines [ """{"text": "a b", "label": "pos", "domain": "general"}"""; ""; """{"text": "c", "label": 1, "domain": "finance"}"""; """{"text": "d", "label": null, "domain": "finance"}""" ]
            let xs = ClassificationData.Read ok
            Expect.equal [ for x in xs -> x.Label ] [ "pos"; "1"; null ] "string, integer and null labels"
            Expect.equal xs[1].Line 3 "line numbers count blank lines"
            let bad (line: string) (fragments: string list) =
                let f = writeLines [ """{"text": "a", "label": "x", "domain": "general"}"""; line ]
                throwsWith<CorpusException> (fun () -> ClassificationData.Read f |> ignore) ($"{f}:2" :: fragments) line
            bad "{not json" [ "malformed JSON" ]
            bad """{"text": "a", "label": "x"}""" [ "missing field \"domain\"" ]
            bad """{"text": "a", "label": 0.5, "domain": "g"}""" [ "non-integer number" ]
            bad """{"text": "", "label": "x", "domain": "g"}""" [ "\"text\" is empty" ]
            bad """{"text": "a", "label": "x", "domain": "g", "lable": 1}""" [ "unknown field \"lable\"" ]
            bad """["a"]""" [ "expected a JSON object" ]
            throwsWith<CorpusException> (fun () -> ClassificationData.Of(xs, "medical", ok) |> ignore) [ "no example of domain \"medical\""; "finance, general" ] "absent domain"
            throwsWith<CorpusException> (fun () -> ClassificationData.Indices(Seq.take 2 xs |> Seq.toArray, [| "pos" |]) |> ignore) [ $"{ok}:3"; "label \"1\"" ] "unknown label"
            Expect.isTrue (ClassificationData.InDomain("general/animals", "general") && not (ClassificationData.InDomain("generalist", "general"))) "domain parts"

        testCase "the objective: batches are a function of (step, micro); DANN's loss reaches the discriminator and the body; its state round-trips" <| fun _ ->
            let side (rows: int[] list) = EncodedSide(List.toArray rows, [| for i in 0 .. rows.Length - 1 -> int64 (i % 2) |], [| for i in 0 .. rows.Length - 1 -> int64 (i % 3) |], 0)
            let src = side [ for i in 0 .. 5 -> [| 256; 65 + i; 66; 46 |] ]
            let tgt = side [ for i in 0 .. 5 -> [| 256; 70 + i; 46 |] ]
            let o = UdaOptions(DataPath = "x.jsonl").WithMethod UdaMethod.Dann
            let cfg = o.Train.WithBatchSize 4
            use model0 = microModel 7L
            let config = SequenceClassification.WithHead(model0.Config, [| "a"; "b" |])
            use model = new CausalLM(config, 7L)
            use objective = new ClassifyObjective("uda", src, tgt, o, 258, 32, 5L, "fp", torch.CPU)
            use a = objective.Batch(3L, 0, cfg, torch.CPU)
            use b = objective.Batch(3L, 0, cfg, torch.CPU)
            for x, y in [ a.Source, b.Source; a.Target, b.Target; a.Labels, b.Labels ] do Expect.isTrue (x.shape = y.shape && maxAbsDiff x y = 0.0) "same position, same batch"
            Expect.equal a.Normalizer 4L "normalised by source rows"
            use sink = new Research.Training.MetricSink()
            use loss = objective.Loss(model, a, sink)
            loss.backward()
            let aux = objective.AuxiliaryParameters() |> List.ofSeq
            Expect.equal aux.Length 4 "two linear layers, weight and bias"
            Expect.isTrue (aux |> List.exists (fun struct (_, p) -> not (isNull p.grad) && p.grad.abs().sum().item<float32>() > 0.0f)) "the discriminator learns"
            Expect.isTrue (model.ScoreHead.weight.grad.abs().sum().item<float32>() > 0.0f) "the head learns"
            let metrics = sink.Drain()
            Expect.isTrue (metrics.ContainsKey "dann_lambda" && metrics.ContainsKey "loss_uda") "DANN's metrics"
            let file = Path.Combine(tempDir "uda-state", "objective.safetensors")
            Safetensors.Save(file, objective.StateTensors())
            use other = new ClassifyObjective("uda", src, tgt, o, 258, 32, 99L, "fp", torch.CPU)
            let state = Safetensors.Load file
            other.LoadState(state, file)
            for struct (_, p), struct (_, q) in Seq.zip (objective.AuxiliaryParameters()) (other.AuxiliaryParameters()) do
                Expect.equal (maxAbsDiff p q) 0.0 "the discriminator resumes exactly"
            use plain = new ClassifyObjective("classify", src, null, null, 258, 32, 5L, "fp", torch.CPU)
            let empty = Path.Combine(tempDir "uda-state", "empty.safetensors")
            Safetensors.Save(empty, plain.StateTensors())
            plain.LoadState(Safetensors.Load empty, empty)
            throwsWith<InvalidDataException> (fun () -> other.LoadState(Safetensors.Load empty, empty)) [ "empty.safetensors"; "discriminator" ] "a state without the discriminator"

        testCase "the suite scores nothing on a model without a head, so it can follow every stage" <| fun _ ->
            let f = writeLines [ """{"text": "a", "label": "x", "domain": "finance"}""" ]
            use m = microModel 2L
            Expect.isEmpty (Research.Pipelines.ClassificationSuite("t", f, "finance").Evaluate(m, ByteTokenizer.Instance)) "no head, no scores"

        testCase "options are checked with their names" <| fun _ ->
            let uda (f: UdaOptions -> UdaOptions) = (f (UdaOptions(DataPath = "d.jsonl"))).Validate() |> ignore
            throwsWith<System.ArgumentException> (fun () -> uda (fun o -> o.WithThreshold 1.5)) [ "threshold must be in (0, 1]" ] "threshold"
            throwsWith<System.ArgumentException> (fun () -> uda (fun o -> o.WithTrain(o.Train.WithBatchSize 1) :?> UdaOptions)) [ "batch_size must be at least 2" ] "batch"
            throwsWith<System.ArgumentException> (fun () -> uda (fun o -> o.WithDomains("general", "general/animals"))) [ "overlap" ] "overlapping domains"
            throwsWith<System.ArgumentException> (fun () -> (UdaOptions()).Validate() |> ignore) [ "data_path is required" ] "no data"
            throwsWith<System.ArgumentException> (fun () -> (TentOptions(DataPath = "d.jsonl").WithTrain((TentOptions()).Train.WithLora(LoraOptions())) :?> TentOptions).Validate() |> ignore)
                [ "tent: LoRA is not supported" ] "tent with LoRA"

        testCase "shift benchmark: every source example has the shared cue, a target one with probability 1 - severity" <| fun _ ->
            let cued (x: LabeledText) = [ "week."; "news."; "time." ] |> List.exists (fun e -> x.Text.EndsWith e)
            let share sev = let b = ShiftBenchmark(200, sev, 4) in b.Train |> Seq.filter (fun x -> x.Domain = "finance") |> Seq.averageBy (fun x -> if cued x then 1.0 else 0.0)
            Expect.equal (share 0.0) 1.0 "severity 0: all target cued"
            Expect.equal (share 1.0) 0.0 "severity 1: none"
            let half = share 0.5
            Expect.isTrue (half > 0.35 && half < 0.65) $"severity 0.5: about half ({half})"
            let b = ShiftBenchmark(200, 0.5, 4)
            Expect.isTrue (b.Train |> Seq.filter (fun x -> x.Domain.StartsWith "general") |> Seq.forall cued) "source always cued"
            Expect.equal (b.Train |> Seq.map (fun x -> x.Domain) |> Seq.distinct |> Seq.sort |> List.ofSeq) [ "finance"; "general/animals"; "general/people"; "general/towns" ] "three sources, one target"
            Expect.equal b.Test.Count 200 "size / 2 per domain in the test"
            Expect.equal [ for x in ShiftBenchmark(200, 0.5, 4).Train -> x.Text ] [ for x in b.Train -> x.Text ] "same seed, same examples"
            let pos = b.Train |> Seq.averageBy (fun x -> if x.Label = ShiftBenchmark.Positive then 1.0 else 0.0)
            Expect.isTrue (pos > 0.4 && pos < 0.6) $"balanced labels ({pos})"
    ]
