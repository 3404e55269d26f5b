module Research.Tests.ChunkedLossTests

open System
open System.Text.Json
open System.Text.Json.Nodes
open Expecto
open TorchSharp
open Research.Models
open Research.Stages
open Research.Training
open Research.Tests.TestUtil

type private T = torch.Tensor
type private F = torch.nn.functional

/// max |a - b| / max |b|: the relative error the plain path is compared with.
let private relErr (a: T) (b: T) =
    use scale = b.abs().max()
    maxAbsDiff a b / max 1e-30 (scale.``to``(torch.float64).item<float>())

let private leaf (x: T) = x.detach().clone().requires_grad_(true)

/// Hidden states (rows, C), head weight (V, C) and targets (rows) with every 5th target ignored; seeded.
let private problem (rows: int64) (vocab: int64) (dim: int64) (scale: float) =
    use g = new torch.Generator(7UL)
    let h = torch.randn([| rows; dim |], generator = g) * scale
    let w = torch.randn([| vocab; dim |], generator = g) * 0.5
    let t = torch.randint(vocab, [| rows |], generator = g)
    let ignored = (torch.arange(rows) % 5L).eq(torch.tensor 3L)
    h, w, t.masked_fill(ignored, TokenLoss.IgnoreIndex)

/// The plain path: full logits, the softcap, then fp32 cross-entropy (as LanguageModeling and the model do it).
let private plainLogits (h: T) (w: T) (cap: float option) =
    let z = F.linear(h, w)
    match cap with
    | Some c -> (z / c).tanh() * c
    | None -> z

let private nullable (cap: float option) = match cap with Some c -> Nullable c | None -> Nullable()

let private checkCrossEntropy (cap: float option) (scale: float) =
    let h, w, t = problem 37L 1000L 16L scale
    let h1, w1, h2, w2 = leaf h, leaf w, leaf h, leaf w
    let plain = TokenLoss.SummedCrossEntropy((plainLogits h1 w1 cap).unsqueeze(0L), t.unsqueeze(0L))
    plain.backward()
    let chunked = ChunkedLoss.SummedCrossEntropy(h2.unsqueeze(0L), w2, t.unsqueeze(0L), nullable cap, 8)
    chunked.backward()
    Expect.isLessThan (relErr chunked plain) 1e-5 $"summed CE: chunked {chunked.item<float32>()} vs plain {plain.item<float32>()}"
    Expect.isLessThan (relErr h2.grad h1.grad) 1e-5 "gradient w.r.t. the hidden states"
    Expect.isLessThan (relErr w2.grad w1.grad) 1e-5 "gradient w.r.t. the head weight"

/// A tiny Qwen3 with a 5,000-token vocabulary (untied or tied head), seeded.
let private qwen3 (tied: bool) =
    let json =
        $"""{{"model_type":"qwen3","vocab_size":5000,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,
             "num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"max_position_embeddings":64,
             "tie_word_embeddings":{(if tied then "true" else "false")}}}"""
    new CausalLM(ModelConfig.FromJson(JsonNode.Parse(json).AsObject(), null), 3L)

let private grads (m: CausalLM) =
    m.named_parameters() |> Seq.map (fun struct (n, p) -> n, p.grad.detach().clone()) |> Map.ofSeq

/// Loss and parameter gradients with chunking off, then on (8 rows: 3 x 13 = 39 rows, uneven chunks).
let private bothWays (m: CausalLM) (loss: unit -> T) =
    let run (rows: int) =
        m.zero_grad()
        use _ = LossChunking.Use(Nullable rows)
        let l = loss ()
        l.backward()
        l.detach().clone(), grads m
    let plain, plainGrads = run 0
    let chunked, chunkedGrads = run 8
    Expect.isLessThan (relErr chunked plain) 1e-5 $"loss: chunked {chunked.item<float32>()} vs plain {plain.item<float32>()}"
    for KeyValue(name, g) in plainGrads do
        Expect.isLessThan (relErr chunkedGrads[name] g) 1e-5 $"gradient of {name}"

let private batch () =
    use g = new torch.Generator(11UL)
    let input = torch.randint(5000L, [| 3L; 13L |], generator = g)
    let target = torch.randint(5000L, [| 3L; 13L |], generator = g)
    let ignored = (torch.arange(39L).view(3L, 13L) % 4L).eq(torch.tensor 0L)
    input, target.masked_fill(ignored, TokenLoss.IgnoreIndex)

[<Tests>]
let tests =
    testList "ChunkedLoss" [
        testCase "summed cross-entropy and its gradients equal the plain ones (37 rows, vocab 1000, chunks of 8)" <| fun _ ->
            checkCrossEntropy None 1.0

        testCase "with a final-logit softcap: value and gradients equal the plain ones" <| fun _ ->
            checkCrossEntropy (Some 5.0) 3.0

        testCase "per-token target log-probs and their gradients under an arbitrary upstream gradient equal the plain ones" <| fun _ ->
            let h, w, t = problem 37L 1000L 16L 1.0
            let h1, w1, h2, w2 = leaf h, leaf w, leaf h, leaf w
            use g = new torch.Generator(5UL)
            let upstream = torch.randn([| 37L |], generator = g)
            let scored = t.ne(torch.tensor TokenLoss.IgnoreIndex)
            let plain =
                F.linear(h1, w1).log_softmax(-1L).gather(-1L, t.masked_fill(scored.logical_not(), 0L).unsqueeze(-1L)).squeeze(-1L)
                 .masked_fill(scored.logical_not(), 0.0)
            let chunked = ChunkedLoss.TargetLogProbs(h2, w2, t, Nullable(), 8)
            Expect.isLessThan (relErr chunked plain) 1e-5 "log-probs"
            Expect.equal (chunked.masked_select(scored.logical_not()).abs().sum().item<float32>()) 0f "ignored rows give 0"
            // A non-linear use of the log-probs, as a preference loss makes: per-row upstream gradients differ.
            (F.logsigmoid(plain * upstream)).sum().backward()
            (F.logsigmoid(chunked * upstream)).sum().backward()
            Expect.isLessThan (relErr h2.grad h1.grad) 1e-5 "gradient w.r.t. the hidden states"
            Expect.isLessThan (relErr w2.grad w1.grad) 1e-5 "gradient w.r.t. the head weight"

        testCase "through a tiny Qwen3 (vocab 5000): training loss and every parameter gradient equal the unchunked ones" <| fun _ ->
            for tied in [ true; false ] do
                use m = qwen3 tied
                let input, target = batch ()
                bothWays m (fun () -> TokenLoss.SummedCrossEntropy(m, m.Embed(input), target))

        testCase "through a tiny Qwen3: preference log-probs (DPO-style loss) and gradients equal the unchunked ones" <| fun _ ->
            use m = qwen3 true
            let input, target = batch ()
            bothWays m (fun () ->
                use lp = SequenceLogProbs.Compute(m, input, target)
                // chosen = row 0, rejected = row 1, as a DPO loss with a zero reference would read them; row 2 a length-normalised term.
                -(F.logsigmoid((lp.Sum[0] - lp.Sum[1]) * 0.1)) - lp.Average()[2])

        testCase "the policy: automatic from 32k vocabularies only, 0 = off, and the setting stays out of configs' JSON when unset" <| fun _ ->
            Expect.equal (LossChunking.RowsFor 259L) 0 "the tiny byte models keep the plain path"
            Expect.equal (LossChunking.RowsFor 151936L) LossChunking.DefaultRows "a 150k vocabulary is chunked"
            do
                use _ = LossChunking.Use(Nullable 0)
                Expect.equal (LossChunking.RowsFor 151936L) 0 "0 = off"
            Expect.equal (LossChunking.RowsFor 151936L) LossChunking.DefaultRows "restored after the scope"
            Expect.isFalse (JsonSerializer.Serialize(TrainConfig()).Contains "LossChunkRows") "absent when null: cache keys unchanged"
            Expect.stringContains (JsonSerializer.Serialize(TrainConfig(LossChunkRows = Nullable 0))) "\"LossChunkRows\":0" "present when set"
    ]
