/// Issue #20, defect 12: invalid UTF-8 in a corpus is an error naming the file, line and byte offset, never U+FFFD.
module Research.Tests.StrictUtf8Tests

open System.IO
open System.Text
open Expecto
open Research.Data
open Research.Tests.TestUtil

let private utf8 (s: string) = Encoding.UTF8.GetBytes s

/// A file of the given byte pieces.
let private file (name: string) (pieces: byte[] list) =
    let path = Path.Combine(tempDir "utf8", name)
    File.WriteAllBytes(path, Array.concat pieces)
    path

[<Tests>]
let tests =
    testList "ReliabilityUtf8" [
        testCase "a JSONL corpus with a Latin-1 byte names the file, line and byte offset" <| fun _ ->
            let line1 = utf8 "{\"text\": \"caf\u00e9 ok\"}\n"
            let before = utf8 "{\"text\": \"caf"
            let path = file "c.jsonl" [ line1; before; [| 0xE9uy |]; utf8 "\"}\n" ]
            throwsWith<CorpusException> (fun () -> Corpus.FromJsonl path |> ignore)
                [ $"{path}:2"; $"byte offset {line1.Length + before.Length}"; "0xE9"; "iconv" ] "jsonl corpus"

        testCase "a text corpus, SFT, preference and multiple-choice files are strict too" <| fun _ ->
            let txt = file "c.txt" [ utf8 "fine\n\nbad "; [| 0xFFuy |]; utf8 "\n" ]
            throwsWith<CorpusException> (fun () -> Corpus.Load txt |> ignore) [ $"{txt}:3"; "byte offset 10"; "0xFF" ] "text"
            let sft = file "s.jsonl" [ utf8 "{\"prompt\": \"q\", \"completion\": \""; [| 0xC3uy; 0x28uy |]; utf8 "\"}\n" ]
            throwsWith<CorpusException> (fun () -> SftData.Read sft |> ignore) [ $"{sft}:1"; "byte offset 31"; "0xC3" ] "sft"
            let pref = file "p.jsonl" [ utf8 "{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": \"b\"}\r\n{\"prompt\": \""; [| 0x80uy |]; utf8 "\"}\n" ]
            throwsWith<CorpusException> (fun () -> PreferenceData.Read pref |> ignore) [ $"{pref}:2"; "0x80" ] "preference"
            let mc = file "m.jsonl" [ utf8 "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 0, \"x\": \""; [| 0xE2uy; 0x82uy |] ]
            throwsWith<CorpusException> (fun () -> McData.Read mc |> ignore) [ $"{mc}:1"; "0xE2" ] "a sequence cut off at the end of the file"

        testCase "valid UTF-8 reads as before: multi-byte text, a byte-order mark, CRLF, a line across the read buffer" <| fun _ ->
            let long = String.replicate 70_000 "\u00e9"                   // 140 kB of two-byte characters: across the 64 kB buffer
            let path = file "ok.jsonl" [ [| 0xEFuy; 0xBBuy; 0xBFuy |]; utf8 "{\"text\": \"\u65e5\u672c \ud83d\ude00\"}\r\n"; utf8 $"{{\"text\": \"{long}\"}}\n" ]
            let c = Corpus.FromJsonl path
            Expect.equal [ for d in c.Documents -> d.Text, d.Line ] [ "\u65e5\u672c \ud83d\ude00", 1; long, 2 ] "texts and lines"
            let head = utf8 $"{{\"text\": \"{long}\"}}\n{{\"text\": \""
            let bad = file "bad-late.jsonl" [ head; [| 0xFEuy |]; utf8 "\"}" ]
            throwsWith<CorpusException> (fun () -> Corpus.FromJsonl bad |> ignore) [ $"{bad}:2"; $"byte offset {head.Length}" ] "offset past the first buffer"
            let txt = file "ok.txt" [ [| 0xEFuy; 0xBBuy; 0xBFuy |]; utf8 "na\u00efve caf\u00e9\n" ]
            Expect.equal (Corpus.Load txt).Documents[0].Text "na\u00efve caf\u00e9\n" "text file (a document keeps its newline, as before)"
    ]
