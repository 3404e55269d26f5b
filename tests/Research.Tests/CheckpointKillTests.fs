/// Issue #20, tests (a): a training run killed at every step of every checkpoint save (and of final/) resumes to the
/// metrics and weights of a run never killed. A kill is a copy of the run directory taken by AtomicFile's fault seam.
module Research.Tests.CheckpointKillTests

open System.IO
open Expecto
open Research.Data
open Research.Stages
open Research.Training
open Research.Runs
open Research.Tests.TestUtil

let private blocks = lazy (Packing.Pack(Research.Data.Synthetic.QuickWorld.General(60, 1), ByteTokenizer.Instance, 32))

let private config =
    TrainConfig(Steps = 12, BatchSize = 4, LearningRate = 3e-3, WarmupSteps = 2, LogEvery = 2, EvalEvery = 0, CheckpointEvery = 4, Seed = 5L)

let private objective () = Adapt.Pretrain(blocks.Value, config, "kill")

let private train seed dir =
    use m = microModel seed
    let r = Trainer.Run(m, ByteTokenizer.Instance, objective (), config, dir, null, TextWriter.Null)
    r.ResumedFrom, File.ReadAllBytes(Path.Combine(dir, Trainer.FinalDir, "model.safetensors"))

[<Tests>]
let tests =
    testList "ReliabilityKills" [
        for twoRenames in [ false; true ] do
            testCase $"a run killed at any step of a checkpoint save resumes to the same metrics and weights (two renames: {twoRenames})" <| fun _ ->
                let straight = tempDir "straight"
                let _, weights = train 23L straight
                let dir = tempDir "killed"
                let kills = AtomicDirectoryTests.withKillCopies twoRenames dir (fun () -> train 23L dir |> ignore)
                Expect.equal kills.Length (if twoRenames then 2 + 4 + 2 else 2 + 3 + 2) "every step of the saves at 4 and 8 and of final/"
                let resumedFrom =
                    [ for step, copy in kills do
                        let from, resumed = train 23L copy              // the stage's own init: a kill before the first checkpoint restarts
                        Expect.equal (metricsWithoutTime (Path.Combine(copy, Trainer.MetricsFile))) (metricsWithoutTime (Path.Combine(straight, Trainer.MetricsFile)))
                            $"killed after '{step}': same metrics"
                        Expect.isTrue (resumed = weights) $"killed after '{step}': same final weights"
                        from ]
                // the save at 4 is in once its directory is moved in; the save at 8 once exchanged (or moved in)
                let expected = if twoRenames then [ 0L; 4L; 4L; 4L; 8L; 8L; 8L; 8L ] else [ 0L; 4L; 4L; 8L; 8L; 8L; 8L ]
                Expect.equal resumedFrom expected "resumed from the checkpoint each kill left"
    ]
