module Research.Tests.BackendTests

open System
open System.IO
open System.Buffers.Binary
open Expecto
open TorchSharp
open Research.Backend
open Research.Tests.TestUtil

/// A minimal ELF64 with one .gnu.version_r section requiring two versions of one library.
let private tinyElf () =
    let bytes = Array.zeroCreate<byte> 1024
    let w16 (o: int) (v: int) = BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(o), uint16 v)
    let w32 (o: int) (v: int) = BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(o), uint32 v)
    let w64 (o: int) (v: int) = BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(o), uint64 v)
    bytes[0] <- 0x7fuy; bytes[1] <- byte 'E'; bytes[2] <- byte 'L'; bytes[3] <- byte 'F'; bytes[4] <- 2uy; bytes[5] <- 1uy
    // strings at 0x100: "\0libstdc++.so.6\0GLIBCXX_3.4.32\0GLIBCXX_3.4\0"
    let strs = "\000libstdc++.so.6\000GLIBCXX_3.4.32\000GLIBCXX_3.4\000"B
    Array.blit strs 0 bytes 0x100 strs.Length
    // verneed at 0x80: version 1, 2 aux, file=1, aux=16, next=0; aux entries at 0x90 and 0xA0
    w16 0x80 1; w16 0x82 2; w32 0x84 1; w32 0x88 16; w32 0x8C 0
    w32 0x90 0x1234; w16 0x94 0; w16 0x96 3; w32 0x98 16; w32 0x9C 16     // GLIBCXX_3.4.32
    w32 0xA0 0x5678; w16 0xA4 0; w16 0xA6 2; w32 0xA8 31; w32 0xAC 0      // GLIBCXX_3.4
    // section headers at 0x180: [0] null, [1] .dynstr (strtab), [2] .gnu.version_r
    w64 0x28 0x180; w16 0x3A 64; w16 0x3C 3
    let sh (i: int) (typ: uint32) (off: int) (size: int) (link: int) (info: int) =
        let b = 0x180 + i * 64
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(b + 4), typ)
        w64 (b + 24) off; w64 (b + 32) size; w32 (b + 40) link; w32 (b + 44) info
    sh 1 3u 0x100 strs.Length 0 0
    sh 2 0x6ffffffeu 0x80 48 1 1
    bytes

[<Tests>]
let tests =
    testList "Backend" [
        testCase "ELF patch sets VER_FLG_WEAK on exactly the named version, nothing else" <| fun _ ->
            let elf = tinyElf ()
            let patched = ElfVersionPatch.MarkVersionWeak(elf, "GLIBCXX_3.4.32")
            Expect.isNotNull patched "patched"
            let diff = [ for i in 0 .. elf.Length - 1 do if elf[i] <> patched[i] then i ]
            Expect.equal diff [ 0x94 ] "only the flags of the GLIBCXX_3.4.32 entry change"
            Expect.equal patched[0x94] 2uy "VER_FLG_WEAK"
            Expect.isNull (ElfVersionPatch.MarkVersionWeak(elf, "GLIBCXX_9.9")) "absent version: nothing to do"
            throwsWith<InvalidDataException> (fun () -> ElfVersionPatch.MarkVersionWeak(Array.zeroCreate 64, "x") |> ignore) [ "not an ELF" ] "not ELF"

        testCase "torch is started and computes (matmul, SDPA, bf16)" <| fun _ ->
            Expect.stringContains TorchRuntime.Report "" "report exists"
            use a = torch.ones(2L, 3L)
            use b = torch.ones(3L, 4L)
            use c = a.matmul(b)
            Expect.equal (c.sum().item<float32>()) 24.0f "2x3 @ 3x4 of ones"
            use q = torch.randn(1L, 2L, 4L, 8L)
            use o = torch.nn.functional.scaled_dot_product_attention(q, q, q, is_casual = true)
            Expect.equal o.shape [| 1L; 2L; 4L; 8L |] "SDPA shape"
            use h = a.``to``(torch.bfloat16).matmul(b.``to``(torch.bfloat16))
            Expect.equal (h.sum().``to``(torch.float32).item<float32>()) 24.0f "bf16 matmul"

        testCase "device choice: cpu by name; cuda asked for without CUDA is a clear error" <| fun _ ->
            Expect.equal (Devices.Choose("cpu").``type``) DeviceType.CPU "cpu"
            if not (torch.cuda.is_available ()) then
                throwsWith<System.InvalidOperationException> (fun () -> Devices.Choose("cuda") |> ignore) [ "CUDA is not available"; "--device cpu" ] "no cuda"
                Expect.equal (Devices.Choose("auto").``type``) DeviceType.CPU "auto falls back to cpu"

        testCase "same seed, same model; another seed, another model" <| fun _ ->
            use a = microModel 41L
            use b = microModel 41L
            use c = microModel 42L
            let w (m: Research.Models.CausalLM) = m.EmbeddingWeight
            Expect.isTrue (w(a).allclose(w(b), 0.0, 0.0)) "same seed"
            Expect.isFalse (w(a).allclose(w(c), 0.0, 0.0)) "different seed"
    ]
