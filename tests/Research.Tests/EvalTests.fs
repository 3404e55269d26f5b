module Research.Tests.EvalTests

open Expecto
open TorchSharp
open Research.Data
open Research.Eval
open Research.Tests.TestUtil

let private docs = [ Document("The otter swims.", "t", 1); Document("Q3 revenue rose 4.2% to $12.5M, and the long document goes on past one window of the model.", "t", 2) ]

/// Log-likelihood of one document by the definition: each token given all earlier ones (EOS first), one forward.
let private directLL (m: Research.Models.CausalLM) (text: string) =
    use _ng = torch.no_grad ()
    let toks = Array.append [| int64 ByteTokenizer.Instance.EosId |] (ByteTokenizer.Instance.Encode text |> Array.map int64)
    use input = torch.tensor(toks[.. toks.Length - 2], dtype = torch.int64).unsqueeze(0L)
    use logp = m.Forward(input).log_softmax(-1L)
    [ for i in 0 .. toks.Length - 2 -> float (logp[0L, int64 i, toks[i + 1]].item<float32>()) ] |> List.sum

[<Tests>]
let tests =
    testList "Eval" [
        testCase "perplexity is corpus-level: totals of LL over tokens and bytes" <| fun _ ->
            use m = microModel 31L
            let r = Perplexity.Evaluate(m, ByteTokenizer.Instance, docs, "t", 128) // one window per document: the direct sum sees the same context
            let ll = docs |> List.sumBy (fun d -> directLL m d.Text)
            let tokens = docs |> List.sumBy (fun d -> d.Text.Length)
            Expect.floatClose Accuracy.medium r.LogLikelihood ll "LL = sum of per-token log-probs"
            Expect.equal r.Tokens (int64 tokens) "every byte is a token"
            Expect.floatClose Accuracy.medium r.Perplexity (exp (-ll / float tokens)) "ppl = exp(-LL/N)"
            Expect.floatClose Accuracy.medium r.BitsPerByte (-ll / (float tokens * log 2.0)) "bpb = -LL/(bytes ln 2)"
            let words = docs |> List.sumBy (fun d -> d.Text.Split(' ').Length)
            Expect.floatClose Accuracy.medium r.WordPerplexity (exp (-ll / float words)) "word ppl"

        testCase "documents longer than the context are scored in disjoint windows, each token once" <| fun _ ->
            use m = microModel 32L
            let r = Perplexity.Evaluate(m, ByteTokenizer.Instance, docs, "t", 16)
            Expect.equal r.Tokens (int64 (docs |> List.sumBy (fun d -> d.Text.Length))) "all tokens scored once"
            Expect.isTrue (System.Double.IsFinite r.LogLikelihood && r.LogLikelihood < 0.0) "finite negative LL"

        testCase "scores do not depend on the batch size" <| fun _ ->
            use m = microModel 33L
            let many = List.init 9 (fun i -> Document(String.replicate (i + 1) "abc ", "t", i + 1))
            let a = Perplexity.Evaluate(m, ByteTokenizer.Instance, many, "t", 16, batchSize = 1)
            let b = Perplexity.Evaluate(m, ByteTokenizer.Instance, many, "t", 16, batchSize = 7)
            Expect.floatClose Accuracy.medium a.LogLikelihood b.LogLikelihood "same LL"

        testCase "each document's LL is kept, and the bootstrap interval over documents brackets the corpus perplexity" <| fun _ ->
            use m = microModel 35L
            let r = Perplexity.Evaluate(m, ByteTokenizer.Instance, docs, "t", 128, batchSize = 3)   // both documents in one batch
            Expect.equal r.Documents.Count docs.Length "one entry per document"
            for struct (ll, tokens), d in Seq.zip r.Documents docs do
                Expect.floatClose Accuracy.medium ll (directLL m d.Text) $"LL of document {d.Line}, apart from its batch neighbour"
                Expect.equal tokens (int64 d.Text.Length) $"tokens of document {d.Line}"
            Expect.floatClose Accuracy.high (r.Documents |> Seq.sumBy (fun struct (l, _) -> l)) r.LogLikelihood "documents sum to the corpus LL"
            let ci = r.PerplexityInterval()
            Expect.isTrue (ci.Lower <= r.Perplexity && r.Perplexity <= ci.Upper && ci.Lower < ci.Upper) $"{ci.Lower} <= {r.Perplexity} <= {ci.Upper}"
            Expect.equal ci.Method "bootstrap" "method"
            Expect.equal (r.PerplexityInterval()) ci "fixed seed: the same interval"
            let metrics = r.ToMetrics "t_"
            Expect.equal (metrics["t_perplexity_lower"], metrics["t_perplexity_upper"]) (ci.Lower, ci.Upper) "reported as metrics"
            let one = Perplexity.Evaluate(m, ByteTokenizer.Instance, [ List.head docs ], "t", 16)
            Expect.isFalse (one.ToMetrics("").ContainsKey "perplexity_lower") "one document: no interval"

        testCase "an empty corpus is an error" <| fun _ ->
            use m = microModel 34L
            throwsWith<System.ArgumentException> (fun () -> Perplexity.Evaluate(m, ByteTokenizer.Instance, [], "nothing", 16) |> ignore) [ "nothing" ] "empty"
    ]
