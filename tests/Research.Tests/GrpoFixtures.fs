/// What the GRPO test lists share: the reward they train towards and its prompt file.
module Research.Tests.GrpoFixtures

open System.IO
open Research.Stages.Online
open Research.Tests.TestUtil

/// The share of a completion's characters that are 'a': one registration (name and version) for every GRPO list.
let shareOfA = Reward.Of("share_of_a", 1, fun _ completion _ -> if completion.Length = 0 then 0.0 else float (completion |> Seq.filter ((=) 'a') |> Seq.length) / float completion.Length)

/// Twelve prompts "say a i:" whose answer is "a", in prompts.jsonl under dir; registers shareOfA.
let writePrompts (dir: string) =
    Rewards.Register shareOfA
    let data = Path.Combine(dir, "prompts.jsonl")
    File.WriteAllLines(data, [ for i in 0 .. 11 -> $"{{\"prompt\": \"say a {i}:\", \"answer\": \"a\"}}" ])
    data
