/// Issue #20, defect 8: model and training configs are bounded, and the memory they imply is checked, before allocating.
module Research.Tests.ConfigBoundsTests

open System.IO
open Expecto
open Research.Models
open Research.Training
open Research.Tests.TestUtil

/// A llama config.json with one key changed.
let private configFile (key: string) (value: string) =
    let path = Path.Combine(tempDir "bounds", "config.json")
    let keys =
        [ "model_type", "\"llama\""; "vocab_size", "259"; "hidden_size", "32"; "intermediate_size", "64"; "num_hidden_layers", "2"
          "num_attention_heads", "4"; "num_key_value_heads", "2"; "max_position_embeddings", "64"; "rms_norm_eps", "1e-5" ]
        |> List.filter (fun (k, _) -> k <> key)
    let body = (keys @ [ key, value ]) |> List.map (fun (k, v) -> $"\"{k}\": {v}") |> String.concat ", "
    File.WriteAllText(path, "{" + body + "}")
    path

[<Tests>]
let tests =
    testList "ReliabilityConfigs" [
        testCase "a config.json out of range names the file and the key" <| fun _ ->
            for key, value in [ "num_hidden_layers", "1000000"; "vocab_size", "0"; "hidden_size", "-32"; "max_position_embeddings", "2000000000"
                                "rms_norm_eps", "0"; "rope_theta", "-1"; "head_dim", "100000" ] do
                let path = configFile key value
                throwsWith<InvalidDataException> (fun () -> ModelConfig.Load path |> ignore) [ path; key; value ] key

        testCase "a config whose parameters exceed the machine's memory is refused before allocating, naming what dominates" <| fun _ ->
            let layers = ModelConfig(HiddenSize = 65536, IntermediateSize = 262144, NumHiddenLayers = 1000, NumAttentionHeads = 512, NumKeyValueHeads = 512)
            throwsWith<InvalidDataException> (fun () -> new CausalLM(layers) |> ignore) [ "num_hidden_layers 1000"; "GiB"; "this machine offers" ] "layers"
            let vocab = ModelConfig(VocabSize = 16_000_000, HiddenSize = 100_000, IntermediateSize = 8, NumHiddenLayers = 1, NumAttentionHeads = 1, NumKeyValueHeads = 1,
                                    HeadDimOverride = 64)
            throwsWith<InvalidDataException> (fun () -> new CausalLM(vocab) |> ignore) [ "vocab_size 16000000 × hidden_size 100000" ] "embeddings"
            Expect.isLessThan (ModelMemory.Parameters microConfig) 1e6 "a micro model fits"

        testCase "training settings out of range name the setting" <| fun _ ->
            for cfg, key in [ TrainConfig(Beta2 = 1.0), "beta2"; TrainConfig(Beta1 = -0.1), "beta1"; TrainConfig(Epsilon = 0.0), "epsilon"
                              TrainConfig(GradClip = nan), "grad_clip"; TrainConfig(WeightDecay = infinity), "weight_decay"
                              TrainConfig(BatchSize = 2_000_000_000), "batch_size"; TrainConfig(Accumulation = 1_000_000), "accumulation" ] do
                throwsWith<System.ArgumentException> (fun () -> cfg.Validate() |> ignore) [ key ] key

        testCase "training state that exceeds the machine's memory is refused before the optimizer allocates it" <| fun _ ->
            throwsWith<System.InvalidOperationException> (fun () -> TrainMemory.EnsureFits("tune", 2_000_000_000_000L, 4, 2_000_000_000_000L, false))
                [ "tune"; "AdamW moments"; "lora" ] "full fine-tuning of a huge model"
            TrainMemory.EnsureFits("tune", 2_000_000_000_000L / 1_000_000L, 4, 1000L, true)
    ]
