/// Issue #22, item 6: a grpo run killed mid-stage resumes to the metrics and weights of a run never killed.
module Research.Tests.GrpoResumeTests

open System
open System.IO
open Expecto
open Research.Data
open Research.Models
open Research.Stages.Online
open Research.Tests.TestUtil
open TorchSharp

let private prompts () = GrpoFixtures.writePrompts (tempDir "grpo-prompts")

/// RLOO with a KL penalty and two iterations per rollout batch, trained by the loop directly; the checkpoint at step 3
/// falls between the two iterations on rollout batch 1, so resuming needs the held rollouts.
let private killableRun data (dir: string) =
    use m = microModel 61L
    use reference = GrpoExecutor.Frozen(microModel 61L)
    let o = GrpoOptions(DataPath = data, Reward = [| RewardTerm "share_of_a" |], Group = 3, PromptsPerStep = 2, MaxNewTokens = 4, Iterations = 2,
                        Beta = 0.05, Baseline = Baseline.LeaveOneOut, Scale = AdvantageScale.None, FilterUninformative = false)
    let cfg = Research.Training.TrainConfig(Steps = 4, BatchSize = 1, LearningRate = 3e-2, WeightDecay = 0.0, WarmupSteps = 0, LogEvery = 1, EvalEvery = 0, CheckpointEvery = 3, Seed = 4L)
    let objective = GrpoObjective(m, ByteTokenizer.Instance, PromptData.Read data, o.WithTrain(cfg) :?> GrpoOptions, 4L, "kill", reference)
    let r = Research.Training.Trainer.Run(m, ByteTokenizer.Instance, objective, cfg, dir, null, TextWriter.Null)
    r.ResumedFrom, File.ReadAllBytes(Path.Combine(dir, Research.Training.Trainer.FinalDir, "model.safetensors"))

[<Tests>]
let tests =
    testSequencedGroup Groups.inProcess <| testList "GrpoResume" [
        testCase "grpo killed at any step of a save between two iterations resumes to the same metrics and weights" <| fun _ ->
            let data = prompts ()
            let straight = tempDir "grpo-straight"
            let _, weights = killableRun data straight
            let dir = tempDir "grpo-killed"
            let kills = AtomicDirectoryTests.withKillCopies false dir (fun () -> killableRun data dir |> ignore)
            let resumedFrom =
                [ for step, copy in kills do
                    let from, resumed = killableRun data copy
                    Expect.equal (metricsWithoutTime (Path.Combine(copy, Research.Training.Trainer.MetricsFile)))
                                 (metricsWithoutTime (Path.Combine(straight, Research.Training.Trainer.MetricsFile))) $"killed after '{step}': same metrics"
                    Expect.isTrue (resumed = weights) $"killed after '{step}': same final weights"
                    from ]
            Expect.contains resumedFrom 3L "some kill resumed from the checkpoint at step 3, mid rollout batch"
    ]
