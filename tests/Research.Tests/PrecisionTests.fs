/// bf16 where it helps: native bf16 read from fixed /proc/cpuinfo texts, the fallback decision, the keys it gives, and
/// what a run that asked for bf16 records.
module Research.Tests.PrecisionTests

open System.IO
open Expecto
open Research
open Research.Backend
open Research.Data
open Research.Pipelines
open Research.Runs
open Research.Stages
open Research.Training
open Research.Tests.TestUtil

/// The first processor of the 2-core AVX2 EPYC of issue #25 (abridged flags; no AVX-512 at all).
let private epycAvx2 = """processor	: 0
vendor_id	: AuthenticAMD
model name	: AMD EPYC
flags		: fpu vme de pse tsc msr fma cx16 sse4_1 sse4_2 avx f16c avx2 smep bmi2 erms sha_ni vaes vpclmulqdq rdpid fsrm

processor	: 1
model name	: AMD EPYC
flags		: fpu vme de pse tsc msr fma cx16 sse4_1 sse4_2 avx f16c avx2 smep bmi2 erms sha_ni vaes vpclmulqdq rdpid fsrm
"""

let private sapphireRapids = """processor	: 0
model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: fpu avx avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
"""

let private graviton3 = """processor	: 0
BogoMIPS	: 2100.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm sve svebf16 bf16 i8mm
CPU implementer	: 0x41
"""

let private avx512NoBf16 = """model name	: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz
flags		: fpu avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl
"""

let private supportOf text = Bf16Support.FromCpu(CpuInfo.Parse text) |> Option.ofObj |> Option.get
let private none = Bf16Support(false, "test CPU: no native bf16")
let private native = Bf16Support(true, "test CPU: avx512_bf16")

[<Tests>]
let tests =
    testList "Precision" [
        testCase "native bf16 from /proc/cpuinfo: avx512_bf16 / amx_bf16 on x86, bf16 on aarch64; AVX2 or plain AVX-512 is not" <| fun _ ->
            let epyc = CpuInfo.Parse epycAvx2
            Expect.equal epyc.Model "AMD EPYC" "model name of the first processor"
            Expect.isTrue (epyc.Has "avx2" && not (epyc.Has "avx512f")) "flags of the first processor"
            Expect.isFalse (supportOf epycAvx2).Native "AVX2 EPYC"
            Expect.stringContains (supportOf epycAvx2).Reason "AMD EPYC: no native bf16" "the reason names the CPU"
            Expect.isTrue (supportOf sapphireRapids).Native "Sapphire Rapids"
            Expect.stringContains (supportOf sapphireRapids).Reason "avx512_bf16" "the flag that decided"
            Expect.isTrue (supportOf graviton3).Native "Graviton 3 (Features: bf16)"
            Expect.isFalse (supportOf avx512NoBf16).Native "Skylake: AVX-512 without its bf16 extension"
            Expect.isNull (CpuInfo.Parse "no such lines\n") "no flags line: nothing to decide from"
            Expect.isNull (Bf16Support.FromCpu null) "then the probe decides"

        testCase "bf16 falls back to float32 without native bf16, says why and how to force it; forced or native stays bf16" <| fun _ ->
            let bf16 = TrainConfig().WithPrecision Precision.BFloat16
            let fell = PrecisionPolicy.Decide(bf16, none, fun () -> 40.0)
            Expect.equal (fell.Requested, fell.Used, fell.FellBack) (Precision.BFloat16, Precision.Float32, true) "falls back"
            for part in [ "no native bf16"; "40.0x slower"; "training in float32"; "ForceBf16" ] do
                Expect.stringContains fell.Note part "the one line"
            Expect.isFalse (fell.Note.Contains "\n") "one line"
            let forced = PrecisionPolicy.Decide(bf16.WithForceBf16 true, none)
            Expect.equal (forced.Used, forced.FellBack) (Precision.BFloat16, false) "forced"
            Expect.stringContains forced.Note "forced" "a forced run still says it is emulated"
            let onNative = PrecisionPolicy.Decide(bf16, native)
            Expect.equal (onNative.Used, onNative.Note) (Precision.BFloat16, null) "native: bf16, nothing to say"
            let f32 = PrecisionPolicy.Decide(TrainConfig(), none)
            Expect.equal (f32.Used, f32.Note) (Precision.Float32, null) "float32 asked for"
            Expect.equal (PrecisionPolicy.Effective(bf16, none)) (TrainConfig()) "the fallback's config is the float32 config"
            Expect.equal (PrecisionPolicy.Effective(TrainConfig().WithForceBf16 true, none)) (TrainConfig()) "forcing float32 is no setting"

        testCase "keys: a fallback is keyed as the float32 stage, never as the bf16 one; forced bf16 is keyed as bf16" <| fun _ ->
            let world = World.quick 40 1
            let start = pretrain world.General microConfig |> Stage.named "base"
            let at (s: Step) = start |> (s |> Stage.named "adapt")
            let tuned = adapt (domain world.Finance) |> Stage.steps 3
            let key support stage = Executor.Key(at stage, 1L, null, null, support)
            let f32Key = key none tuned
            Expect.equal (key none (tuned |> Stage.bf16)) f32Key "bf16 without native bf16 trains, and is keyed, in float32"
            Expect.equal (key native tuned) f32Key "float32 keys do not depend on the CPU"
            let bf16Key = key native (tuned |> Stage.bf16)
            Expect.notEqual bf16Key f32Key "bf16 on a native CPU has its own key"
            Expect.equal (key none (tuned |> Stage.forceBf16)) bf16Key "forced bf16 computes bf16: the bf16 key"
            Expect.equal (key native (tuned |> Stage.forceBf16)) bf16Key "forcing where it is native changes nothing"

        testCase "a run that asks for bf16 records what it computed in (metric bf16) and says so when it falls back" <| fun _ ->
            let blocks = Packing.Pack(Research.Data.Synthetic.QuickWorld.General(20, 1), ByteTokenizer.Instance, 32)
            let cfg = TrainConfig(Steps = 2, BatchSize = 2, WarmupSteps = 0, LogEvery = 1, EvalEvery = 0, CheckpointEvery = 0, Seed = 5L, Precision = Precision.BFloat16)
            use m = microModel 3L
            let dir = tempDir "precision"
            let log = new StringWriter()
            Trainer.Run(m, ByteTokenizer.Instance, Adapt.Pretrain(blocks, cfg, "test"), cfg, dir, null, log) |> ignore
            let native = Bf16Support.ThisCpu.Native
            let recorded = [ for o in MetricsLog.Read(Path.Combine(dir, Trainer.MetricsFile)) -> o[Trainer.Bf16Metric].GetValue<float>() ]
            Expect.equal recorded [ (if native then 1.0 else 0.0); (if native then 1.0 else 0.0) ] "every train line says bf16 1 or 0"
            Expect.equal (log.ToString().Contains "training in float32") (not native) "the fallback is said at the start"
    ]
