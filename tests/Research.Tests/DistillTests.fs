/// Distillation losses against divergences computed here with System.Math on fixed small logits.
module Research.Tests.DistillTests

open System
open Expecto
open TorchSharp
open Research.Stages
open Research.Tests.TestUtil

// Student and teacher logits (B=1, T=3, V=4); target -100 at t=1 (its logits are poisoned below where it matters).
let private student = [| [| 0.5; -1.0; 2.0; 0.0 |]; [| 1.0; 1.0; 1.0; 1.0 |]; [| -2.0; 0.3; 0.7; 3.0 |] |]
let private teacher = [| [| 1.5; 0.0; 1.0; -1.0 |]; [| 0.0; 2.0; -2.0; 0.5 |]; [| 0.0; 0.0; 2.5; 1.0 |] |]
let private targets = [| 2L; -100L; 3L |]

let private logits (rows: float[][]) = torch.tensor(Array.collect id rows, dtype = torch.float32).view(1L, int64 rows.Length, int64 rows[0].Length)
let private tgt (xs: int64[]) = torch.tensor(xs, dtype = torch.int64).view(1L, int64 xs.Length)
let private scalar (t: torch.Tensor) = t.detach().``to``(torch.float64).item<float>()
let private vals (t: torch.Tensor) = t.detach().``to``(torch.float64).contiguous().view(-1L).data<float>().ToArray()

// Exact math on one row.
let private softmax (tau: float) (row: float[]) =
    let z = row |> Array.map (fun x -> Math.Exp(x / tau))
    let s = Array.sum z
    z |> Array.map (fun x -> x / s)
let private kl (p: float[]) (q: float[]) = Array.fold2 (fun acc pi qi -> if pi = 0.0 then acc else acc + pi * Math.Log(pi / qi)) 0.0 p q
let private jsd b (pS: float[]) (pT: float[]) =
    let m = Array.map2 (fun t s -> b * t + (1.0 - b) * s) pT pS
    b * kl pT m + (1.0 - b) * kl pS m

/// Per-token divergence by hand for a DistillOptions-like choice.
let private byHand (d: Divergence) b r tau (s: float[]) (t: float[]) =
    let pS, pT = softmax tau s, softmax tau t
    match d with
    | Divergence.Forward -> kl pT pS
    | Divergence.Reverse -> kl pS pT
    | Divergence.Symmetric -> r * kl pT pS + (1.0 - r) * kl pS pT
    | _ -> if b = 0.0 then kl pT pS elif b = 1.0 then kl pS pT else jsd b pS pT

let private kinds = [ Divergence.Forward; Divergence.Reverse; Divergence.Symmetric; Divergence.GeneralizedJsd ]

let private close (tol: float) (actual: float[]) (expected: float[]) what =
    Expect.equal actual.Length expected.Length $"{what}: length"
    for i in 0 .. actual.Length - 1 do
        if abs (actual[i] - expected[i]) > tol * (1.0 + abs expected[i]) then
            failtestf "%s: element %d is %.9g, expected %.9g" what i actual[i] expected[i]

[<Tests>]
let tests =
    testList "Distill" [
        for d in kinds do
            testCase $"{d} per token equals the divergence by hand" <| fun _ ->
                let o = DistillOptions(Divergence = d, Beta = 0.3, SymmetricRatio = 0.25)
                use got = DistillLosses.PerToken(logits student, logits teacher, o)
                Expect.equal got.shape [| 1L; 3L |] "(B, T)"
                close 1e-5 (vals got) (Array.map2 (byHand d 0.3 0.25 1.0) student teacher) (string d)

        testCase "GJSD at beta 0 is forward KL(T||S), at beta 1 reverse KL(S||T), computed directly" <| fun _ ->
            for b, want in [ 0.0, (fun s t -> kl (softmax 1.0 t) (softmax 1.0 s)); 1.0, (fun s t -> kl (softmax 1.0 s) (softmax 1.0 t)) ] do
                use got = DistillLosses.PerToken(logits student, logits teacher, DistillOptions(Beta = b))
                close 1e-5 (vals got) (Array.map2 want student teacher) $"beta {b}"
            // and not the mixture formula, which vanishes at the ends
            Expect.isLessThan (jsd 1e-9 (softmax 1.0 student[0]) (softmax 1.0 teacher[0])) 1e-6 "the mixture JSD itself vanishes at b -> 0"

        testCase "GJSD at beta 0.5 is symmetric in student and teacher" <| fun _ ->
            let o = DistillOptions(Beta = 0.5)
            use a = DistillLosses.PerToken(logits student, logits teacher, o)
            use b = DistillLosses.PerToken(logits teacher, logits student, o)
            close 1e-6 (vals a) (vals b) "JSD(S, T) = JSD(T, S)"
            use c = DistillLosses.PerToken(logits teacher, logits student, DistillOptions(Beta = 0.3))
            use e = DistillLosses.PerToken(logits student, logits teacher, DistillOptions(Beta = 0.7))
            close 1e-6 (vals c) (vals e) "swapping is beta -> 1 - beta"

        testCase "summed over scored tokens only; poisoned masked logits contribute nothing" <| fun _ ->
            let poisoned = Array.copy student
            poisoned[1] <- [| nan; infinity; -infinity; 1e30 |]
            for d in kinds do
                let o = DistillOptions(Divergence = d, Beta = 0.3)
                use got = DistillLosses.Summed(logits poisoned, logits teacher, tgt targets, o)
                let want = byHand d 0.3 0.5 1.0 student[0] teacher[0] + byHand d 0.3 0.5 1.0 student[2] teacher[2]
                Expect.floatClose Accuracy.medium (scalar got) want $"{d}: sum of t=0 and t=2"
            use none = DistillLosses.Summed(logits student, logits teacher, tgt [| -100L; -100L; -100L |], DistillOptions())
            Expect.equal (scalar none) 0.0 "nothing scored: 0"

        testCase "temperature divides both logits" <| fun _ ->
            for d in kinds do
                let o = DistillOptions(Divergence = d, Beta = 0.3, Temperature = 2.0)
                use got = DistillLosses.PerToken(logits student, logits teacher, o)
                close 1e-5 (vals got) (Array.map2 (byHand d 0.3 0.5 2.0) student teacher) $"{d} at tau 2"
            let t1 = byHand Divergence.Forward 0.0 0.5 1.0 student[0] teacher[0]
            let t2 = byHand Divergence.Forward 0.0 0.5 2.0 student[0] teacher[0]
            Expect.isLessThan t2 t1 "a higher temperature flattens both and brings them closer here"

        testCase "top-k with K = V equals the full version" <| fun _ ->
            use t = logits teacher
            let struct (values, indices) = t.topk(4)          // sorted: a permutation of the vocabulary
            for d in kinds do
                let o = DistillOptions(Divergence = d, Beta = 0.3, Temperature = 1.5)
                use full = DistillLosses.Summed(logits student, t, tgt targets, o)
                use topk = DistillLosses.SummedTopK(logits student, values, indices, tgt targets, o)
                Expect.floatClose Accuracy.medium (scalar topk) (scalar full) $"{d}"

        testCase "top-k with K < V renormalises both over the teacher's top-k" <| fun _ ->
            use t = logits teacher
            let struct (values, indices) = t.topk(2)
            use got = DistillLosses.SummedTopK(logits student, values, indices, tgt targets, DistillOptions(Divergence = Divergence.Forward))
            let restricted (row: float[]) (keep: int[]) = keep |> Array.map (fun k -> row[k])
            let top2 (row: float[]) = row |> Array.mapi (fun i x -> i, x) |> Array.sortByDescending snd |> Array.take 2 |> Array.map fst
            let tok i = let k = top2 teacher[i] in kl (softmax 1.0 (restricted teacher[i] k)) (softmax 1.0 (restricted student[i] k))
            Expect.floatClose Accuracy.medium (scalar got) (tok 0 + tok 2) "forward KL over the top-2 tokens"

        testCase "torchtune mix: (1 - kd_ratio) CE + kd_ratio KD" <| fun _ ->
            let o = DistillOptions(Divergence = Divergence.Forward, KdRatio = 0.25)
            let r = DistillLosses.Mixed(logits student, logits teacher, tgt targets, o)
            let ce = -Math.Log((softmax 1.0 student[0])[2]) - Math.Log((softmax 1.0 student[2])[3])
            let kd = byHand Divergence.Forward 0.0 0.5 1.0 student[0] teacher[0] + byHand Divergence.Forward 0.0 0.5 1.0 student[2] teacher[2]
            Expect.floatClose Accuracy.medium (scalar r.CrossEntropy) ce "CE summed over scored tokens"
            Expect.floatClose Accuracy.medium (scalar r.Divergence) kd "KD summed over scored tokens"
            Expect.floatClose Accuracy.medium (scalar r.Loss) (0.75 * ce + 0.25 * kd) "mix"

        testCase "gradients reach the student only through scored tokens" <| fun _ ->
            use s = (logits student).requires_grad_(true)
            use l = DistillLosses.Summed(s, logits teacher, tgt targets, DistillOptions())
            l.backward()
            let g = vals s.grad
            Expect.isTrue (g[4..7] |> Array.forall ((=) 0.0)) "masked position has zero gradient"
            Expect.isTrue (g[0..3] |> Array.exists ((<>) 0.0)) "scored position has a gradient"

        testCase "-inf logits (a padded vocabulary) give finite losses and gradients" <| fun _ ->
            let pad (rows: float[][]) = rows |> Array.map (fun r -> Array.append r [| -infinity |])
            for d in kinds do
                use s = (logits (pad student)).requires_grad_(true)
                use l = DistillLosses.Summed(s, logits (pad teacher), tgt targets, DistillOptions(Divergence = d, Beta = 0.3))
                let want = byHand d 0.3 0.5 1.0 student[0] teacher[0] + byHand d 0.3 0.5 1.0 student[2] teacher[2]
                Expect.floatClose Accuracy.medium (scalar l) want $"{d}: the padded entry changes nothing"
                l.backward()
                Expect.isTrue (vals s.grad |> Array.forall Double.IsFinite) $"{d}: finite gradient"

        testCase "shapes and options are checked with names" <| fun _ ->
            throwsWith<ArgumentException> (fun () -> DistillLosses.PerToken(torch.zeros(1L, 3L, 4L), torch.zeros(1L, 3L, 5L), DistillOptions()) |> ignore) [ "[1, 3, 4]"; "[1, 3, 5]" ] "vocab mismatch"
            throwsWith<ArgumentException> (fun () -> DistillLosses.PerToken(logits student, logits teacher, DistillOptions(Beta = 1.5)) |> ignore) [ "beta" ] "beta out of range"
            throwsWith<ArgumentException> (fun () -> DistillLosses.PerToken(logits student, logits teacher, DistillOptions(Temperature = 0.0)) |> ignore) [ "temperature" ] "temperature 0"
    ]
