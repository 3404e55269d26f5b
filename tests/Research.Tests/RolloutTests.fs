/// The rollout sampler of on-policy training: seeded, batched per prompt, log-probs equal to a full forward's.
module Research.Tests.RolloutTests

open Expecto
open Research.Data
open Research.Models
open Research.Tests.TestUtil

let private prompts : int list list = [ [ 1; 72; 101; 108 ]; [ 1; 84; 104; 101; 32; 111 ] ]
let private asLists (ps: int list list) = ps |> List.map (fun p -> List.toArray p :> System.Collections.Generic.IReadOnlyList<int>) |> List.toArray
/// Options with G = 3, 8 new tokens, temperature 1, seed 7, unless `f` says otherwise (C# records have no F# `with`).
let private opts (seed: int64) (g: int) (temperature: float) (topK: int) (stops: int list) (strings: string list) =
    RolloutOptions(Completions = g, MaxNewTokens = 8, Temperature = temperature, Seed = seed, TopK = topK,
                   StopTokens = List.toArray stops, StopStrings = List.toArray strings)
let private options = opts 7L 3 1.0 0 [] []

[<Tests>]
let tests =
    testList "Rollouts" [
        testCase "G completions per prompt, seeded per (prompt, completion): same seed, same rollouts" <| fun _ ->
            use m = microModel 41L
            let a = Rollouts.Sample(m, asLists prompts, options)
            Expect.equal [ for r in a -> r.Prompt, r.Completion ] [ for p in 0 .. 1 do for j in 0 .. 2 -> p, j ] "prompt-major, G = 3"
            for r in a do
                Expect.equal r.Tokens.Length 8 "no stop token: MaxNewTokens each"
                Expect.equal r.LogProbs.Length r.Tokens.Length "one log-prob per token"
                Expect.isTrue (r.LogProbs |> Array.forall (fun l -> l <= 0.0f && System.Single.IsFinite l)) "log-probs"
            let b = Rollouts.Sample(m, asLists prompts, options)
            Expect.equal [ for r in b -> r.Tokens ] [ for r in a -> r.Tokens ] "same seed, same tokens"
            Expect.equal [ for r in b -> r.LogProbs ] [ for r in a -> r.LogProbs ] "and the same log-probs"
            let c = Rollouts.Sample(m, asLists prompts, opts 8L 3 1.0 0 [] [])
            Expect.notEqual [ for r in c -> r.Tokens ] [ for r in a -> r.Tokens ] "another seed, other tokens"
            // Completion j's stream depends on (seed, prompt, j) only: asking for 2 completions gives the first 2 of 3.
            let two = Rollouts.Sample(m, asLists prompts, opts 7L 2 1.0 0 [] [])
            Expect.equal [ for r in two -> r.Tokens ] [ for r in a do if r.Completion < 2 then r.Tokens ] "independent of G"

        testCase "the sampler's log-probs equal a full forward pass's for the same tokens (largest difference reported)" <| fun _ ->
            use m = microModel 42L
            let rs = Rollouts.Sample(m, asLists prompts, opts 7L 3 0.7 0 [] [])
            let diff = Rollouts.MaxDifference(m, asLists prompts, rs, 0.7)
            printfn "rollout log-prob max |sampler - recomputed| = %g (fp32 CPU, KV cache vs full forward)" diff
            Expect.isLessThan diff 1e-5 "within fp32 rounding of the cache's different summation order"

        testCase "top-k 1 is greedy; a stop token ends a completion and is kept" <| fun _ ->
            use m = microModel 43L
            let greedy = Generation.Generate(m, prompts.Head, SamplingOptions.Greedy 8)
            let r = Rollouts.Sample(m, asLists [ prompts.Head ], opts 7L 2 1.0 1 [] [])
            for x in r do Expect.equal x.Tokens greedy "top-k 1 = greedy"
            let stop = greedy[2]
            let firstStop = greedy |> Array.findIndex ((=) stop)
            let s = Rollouts.Sample(m, asLists [ prompts.Head ], opts 7L 3 1.0 1 [ stop ] [])
            for x in s do
                Expect.equal x.Tokens greedy[.. firstStop] "ends at the stop token, which it keeps"
                Expect.isTrue x.Stopped "marked stopped"
            let text = ByteTokenizer.Instance.Decode(greedy[.. 3])
            let byString = Rollouts.Sample(m, asLists [ prompts.Head ], opts 7L 3 1.0 1 [] [ text.Substring(text.Length - 1) ], ByteTokenizer.Instance)
            Expect.isTrue (byString |> Seq.forall (fun x -> x.Stopped && x.Tokens.Length <= 4)) "a stop string ends it too"

        testCase "bad requests are refused, naming the prompt" <| fun _ ->
            use m = microModel 44L
            throwsWith<System.ArgumentException> (fun () -> Rollouts.Sample(m, asLists [ [ 1 ]; List.replicate 60 5 ], options) |> ignore)
                [ "prompt 1"; "60 tokens"; "context of 64" ] "too long"
            throwsWith<System.ArgumentException> (fun () -> Rollouts.Sample(m, asLists prompts, opts 7L 3 0.0 0 [] []) |> ignore) [ "temperature" ] "greedy is not on-policy sampling"
            throwsWith<System.ArgumentException> (fun () -> Rollouts.Sample(m, asLists prompts, opts 7L 3 1.0 0 [] [ "x" ]) |> ignore) [ "tokenizer" ] "stop strings need a tokenizer"
    ]
