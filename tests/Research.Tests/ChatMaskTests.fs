/// Tune and align render conversations through the model's own chat_template ("model"); the loss mask comes
/// from the rendering and covers assistant turns only. Real tokenizer files (Qwen3, Mistral's SentencePiece).
module Research.Tests.ChatMaskTests

open System
open System.IO
open Expecto
open Research.Pipelines
open Research.Data
open Research.Tests.TestUtil

let private conversation (turns: (ChatRole * string) list) =
    SftExample("chat.jsonl", 1, null, null, turns |> List.map (fun (r, c) -> ChatMessage(r, c, (r = ChatRole.Assistant))) |> List.toArray)

let private render (tok: HfTokenizer) (example: SftExample) =
    let template = ChatTemplates.Resolve("model", tok)
    let tokens = template.Render(example, tok)
    let config = Research.Templates.TokenizerChatConfig.FromJson(File.ReadAllText(Path.Combine(tok.Directory, Tokenizers.ConfigFile)))
    let whole =
        Research.Templates.ChatTemplateRenderer.RenderChat(
            config, example.Messages |> Seq.map (fun m -> Research.Templates.ChatMessage(m.Role.ToString().ToLowerInvariant(), m.Content)) |> Seq.toArray, false)
    tokens, whole

/// The trained tokens, decoded run by run.
let private trainedRuns (tok: HfTokenizer) (tokens: SftTokens) =
    let runs = ResizeArray<ResizeArray<int>>()
    for i in 0 .. tokens.Length - 1 do
        if tokens.Trained[i] then
            if i = 0 || not tokens.Trained[i - 1] then runs.Add(ResizeArray())
            runs[runs.Count - 1].Add tokens.Ids[i]
    [ for r in runs -> tok.DecodeWithSpecial r ]

[<Tests>]
let tests =
    testList "ChatMask" [
        testCase "qwen3: ids are the whole rendering's, trained = the answer and its <|im_end|> only" <| fun _ ->
            let tok = HfTokenizer.Load(HfTokenizerTests.dirOf "qwen3")
            let ex = conversation [ ChatRole.System, "You are a finance tutor."; ChatRole.User, "What is a coupon?"; ChatRole.Assistant, "The interest a bond pays." ]
            let tokens, whole = render tok ex
            Expect.sequenceEqual tokens.Ids (tok.Encode whole) "the ids of the whole rendering, as apply_chat_template(tokenize=True)"
            Expect.equal (trainedRuns tok tokens) [ "<think>\n\n</think>\n\nThe interest a bond pays.<|im_end|>\n" ] "only the assistant turn is trained"
            Expect.isFalse tokens.Trained[0] "the system turn is context"

        testCase "mistral (SentencePiece): every assistant turn of a multi-turn chat is trained, with its </s>; nothing else" <| fun _ ->
            let tok = HfTokenizer.Load(HfTokenizerTests.copyMistralWithTemplate (tempDir "mistral-chat"))
            let ex = conversation [ ChatRole.User, "Hi"; ChatRole.Assistant, "Hello."; ChatRole.User, "A bond?"; ChatRole.Assistant, "A loan you can trade." ]
            let tokens, whole = render tok ex
            Expect.sequenceEqual tokens.Ids (tok.Encode whole) "the ids of the whole rendering"
            let runs = trainedRuns tok tokens |> List.map (fun s -> s.Trim())
            Expect.equal runs [ "Hello.</s>"; "A loan you can trade.</s>" ] "the two answers and their end-of-sequence"
            let struct (prompt, answer) = ChatTemplates.Resolve("model", tok).PromptAndAnswer(ex, tok)
            Expect.equal answer "Hello." "the first answer"
            Expect.stringContains (tok.DecodeWithSpecial prompt) "[/INST]" "the prompt ends with the generation prompt"

        testCase "a template that rewrites earlier turns (Qwen3 multi-turn) is refused with the turn named; no template is named" <| fun _ ->
            let tok = HfTokenizer.Load(HfTokenizerTests.dirOf "qwen3")
            let ex = conversation [ ChatRole.User, "Hi"; ChatRole.Assistant, "Hello."; ChatRole.User, "A bond?"; ChatRole.Assistant, "A loan." ]
            throwsWith<CorpusException> (fun () -> render tok ex |> ignore) [ "chat.jsonl:1"; "assistant turn 2"; "loss mask" ] "prefix-unstable template"
            throwsWith<TokenizerException> (fun () -> ChatTemplates.Resolve("model", ByteTokenizer.Instance) |> ignore) [ "model"; "byte"; "plain" ] "no template on the byte tokenizer"

        testCase "align through the model's template: prompt ends with the generation prompt, each answer is its trained span" <| fun _ ->
            let tok = HfTokenizer.Load(HfTokenizerTests.dirOf "qwen3")
            let path = Path.Combine(tempDir "pref-template", "prefs.jsonl")
            File.WriteAllLines(path, [ """{"prompt":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is a coupon?"}],"chosen":"Interest.","rejected":"A hat."}"""
                                       """{"prompt":"Plain text prompt:","chosen":" yes","rejected":" no"}""" ])
            let file = PreferenceData.Read path
            let template = ChatTemplates.Resolve("model", tok)
            let t = PreferenceData.Tokenize(file.Records, tok, 256, 128, template)
            let e = t.Examples[0]
            Expect.equal (tok.DecodeWithSpecial e.Prompt) "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is a coupon?<|im_end|>\n<|im_start|>assistant\n" "the prompt, with the generation prompt"
            Expect.equal (tok.DecodeWithSpecial e.Chosen) "<think>\n\n</think>\n\nInterest.<|im_end|>\n" "chosen: the assistant turn as the template ends it"
            Expect.equal (tok.DecodeWithSpecial e.Rejected) "<think>\n\n</think>\n\nA hat.<|im_end|>\n" "rejected likewise"
            let whole = template.Model.RenderText([ ChatMessage(ChatRole.System, "Be brief.", false); ChatMessage(ChatRole.User, "What is a coupon?", false)
                                                    ChatMessage(ChatRole.Assistant, "Interest.", true) ], false)
            Expect.sequenceEqual (Array.append e.Prompt e.Chosen) (tok.Encode whole) "prompt + chosen = the ids of the whole rendered conversation"
            let plain = t.Examples[1]
            Expect.sequenceEqual plain.Prompt (tok.Encode "Plain text prompt:") "a string prompt stays text (Qwen adds no BOS)"
            Expect.sequenceEqual plain.Chosen (Array.append (tok.Encode " yes") [| tok.EosId |]) "its completion ends with EOS"
            let untemplated = PreferenceData.Tokenize(file.Records, tok, 256, 128).Examples[0]
            Expect.isTrue (untemplated.Prompt |> Array.contains (tok.TokenToId("<|im_start|>").Value) |> not) "without a template no ChatML markers"
    ]

/// research inspect / generate / eval on a tiny Qwen3-family model carrying Qwen3's real tokenizer files.
[<Tests>]
let checkpointTools =
    testList "CheckpointTools" [
        testCase "inspect, generate (plain and --chat, stops at eos) and eval on an HF directory; the CLI prints the same JSON" <| fun _ ->
            let tokDir = HfTokenizerTests.dirOf "qwen3"
            let vocab = (HfTokenizer.Load tokDir).VocabSize
            let json =
                $"""{{"model_type":"qwen3","vocab_size":{vocab},"hidden_size":32,"intermediate_size":48,"num_hidden_layers":1,"num_attention_heads":2,
                    "num_key_value_heads":1,"head_dim":16,"max_position_embeddings":128,"rms_norm_eps":1e-6,"rope_theta":1000000.0,
                    "tie_word_embeddings":true,"eos_token_id":151645}}"""
            let dir = FamilyTests.writeRandomCheckpoint "qwen3-tools" (FamilyTests.parse json) 3L TorchSharp.torch.bfloat16 None
            for f in Directory.GetFiles tokDir do File.Copy(f, Path.Combine(dir, Path.GetFileName f))
            let info = Research.Pipelines.CheckpointTools.Inspect dir
            Expect.equal (info["model_type"].GetValue<string>()) "qwen3" "family"
            Expect.equal (info["dtype"].GetValue<string>()) "float32" "dtype as config.json says (none given: float32)"
            Expect.equal (info["tokenizer"].GetValue<string>()) "hf" "HF tokenizer"
            Expect.isTrue (info["chat_template"].GetValue<bool>()) "chat template present"
            Expect.equal (info["eos"].["text"].GetValue<string>()) "<|im_end|>" "eos"
            let greedy = Research.Models.SamplingOptions(MaxNewTokens = 6)
            let a = Research.Pipelines.CheckpointTools.Generate(dir, "A bond is", false, null, greedy)
            let b = Research.Pipelines.CheckpointTools.Generate(dir, "A bond is", false, null, greedy)
            Expect.equal (a.ToJsonString()) (b.ToJsonString() |> fun s -> s.Replace(b["seconds"].ToJsonString(), a["seconds"].ToJsonString())) "greedy is deterministic"
            Expect.isLessThanOrEqual (a["new_tokens"].GetValue<int>()) 6 "at most max-new-tokens"
            let chat = Research.Pipelines.CheckpointTools.Generate(dir, "What is a bond?", true, "Be brief.", greedy)
            let rendered = Research.Templates.ChatTemplateRenderer.RenderChat(
                               Research.Templates.TokenizerChatConfig.FromJson(File.ReadAllText(Path.Combine(dir, Tokenizers.ConfigFile))),
                               [| Research.Templates.ChatMessage("system", "Be brief."); Research.Templates.ChatMessage("user", "What is a bond?") |], true)
            Expect.equal (chat["prompt_tokens"].GetValue<int>()) ((HfTokenizer.Load dir).Encode rendered).Length "the chat prompt is the rendered template"
            let text = Path.Combine(dir, "finance.txt")
            File.WriteAllText(text, "A bond pays a coupon.\fA share is a part of a company.")
            let mc = Path.Combine(dir, "mc.jsonl")
            File.WriteAllText(mc, """{"question":"A bond pays a","choices":["coupon","dividend"],"answer":0}""" + "\n" + """{"question":"A share is part of a","choices":["company","loan"],"answer":0}""" + "\n")
            let ev = Research.Pipelines.CheckpointTools.Evaluate(dir, text, mc)
            let ppl = ev["text"].["perplexity"].GetValue<float>()
            Expect.isTrue (ppl > 1.0 && Double.IsFinite ppl) $"perplexity {ppl}"
            Expect.equal (ev["mc"].["items"].GetValue<int>()) 2 "two items scored"
            let cli = Path.Combine(AppContext.BaseDirectory, "research.dll")
            let psi = Diagnostics.ProcessStartInfo("dotnet", $"\"{cli}\" inspect \"{dir}\" --json", RedirectStandardOutput = true, RedirectStandardError = true)
            use p = Diagnostics.Process.Start psi
            let stdout = p.StandardOutput.ReadToEnd()
            p.WaitForExit()
            Expect.equal p.ExitCode 0 "research inspect exits 0"
            Expect.isTrue (Text.Json.Nodes.JsonNode.DeepEquals(Text.Json.Nodes.JsonNode.Parse stdout, info)) "the CLI prints CheckpointTools.Inspect's JSON"
            File.Delete(Path.Combine(dir, Tokenizers.JsonFile))
            File.Delete(Path.Combine(dir, Tokenizers.ConfigFile))
            let psi2 = Diagnostics.ProcessStartInfo("dotnet", $"\"{cli}\" generate \"{dir}\" --prompt hi", RedirectStandardOutput = true, RedirectStandardError = true)
            use p2 = Diagnostics.Process.Start psi2
            let err = p2.StandardError.ReadToEnd()
            p2.WaitForExit()
            Expect.equal p2.ExitCode 1 "a weights-only directory: exit 1"
            Expect.stringContains err "needs a tokenizer" "and it says why"
    ]
