module Research.Tests.SafetensorsTests

open System
open System.IO
open System.Text
open System.Text.Json
open System.Buffers.Binary
open System.Collections.Generic
open Expecto
open TorchSharp
open Research.Models

// ---- helpers ----

let private withTempDir (f: string -> unit) =
    let dir = Path.Combine(Path.GetTempPath(), "research-st-" + Guid.NewGuid().ToString("N"))
    Directory.CreateDirectory dir |> ignore
    try f dir finally (try Directory.Delete(dir, true) with _ -> ())

let private bytesOf (t: torch.Tensor) : byte[] = t.contiguous().bytes.ToArray()

let private fileName (p: string) : string =
    match Path.GetFileName p with
    | null -> ""
    | s -> s

/// Same dtype, shape and bytes.
let private same (a: torch.Tensor) (b: torch.Tensor) =
    a.dtype = b.dtype && a.shape = b.shape && bytesOf a = bytesOf b

let private kv (name: string) (t: torch.Tensor) = KeyValuePair(name, t)

/// A safetensors file written byte by byte from a JSON header string (no padding unless the JSON has it).
let private writeRaw (path: string) (json: string) (data: byte[]) =
    let header = Encoding.UTF8.GetBytes json
    let len = Array.zeroCreate<byte> 8
    BinaryPrimitives.WriteUInt64LittleEndian(Span<byte>(len), uint64 header.Length)
    File.WriteAllBytes(path, Array.concat [ len; header; data ])

let private writeHeaderLength (path: string) (n: uint64) (rest: byte[]) =
    let len = Array.zeroCreate<byte> 8
    BinaryPrimitives.WriteUInt64LittleEndian(Span<byte>(len), n)
    File.WriteAllBytes(path, Array.append len rest)

/// Opening (or loading) must fail with a SafetensorsException naming the file and, if given, the tensor.
let private expectError (path: string) (tensor: string option) (mustContain: string list) (f: unit -> unit) =
    let ex =
        try
            f ()
            failtest "expected a SafetensorsException, got none"
        with :? SafetensorsException as e -> e
    Expect.stringContains ex.Message (fileName path) "message names the file"
    match tensor with
    | Some t ->
        Expect.stringContains ex.Message ("'" + t + "'") "message names the tensor"
        Expect.equal (Option.ofObj ex.TensorName) (Some t) "TensorName set"
    | None -> ()
    for s in mustContain do Expect.stringContains ex.Message s "message explains the problem"

let private f32 (xs: float32[]) = torch.tensor(xs)

// ---- tests ----

[<Tests>]
let tests =
    testList "Safetensors" [

        test "round-trip is bit-exact for every dtype" {
            withTempDir (fun dir ->
                let special = f32 [| nanf; -0.0f; infinityf; -infinityf; 1e-45f; 3.4e38f; 1.0f; -2.5f |]
                let src =
                    [ "f32", special
                      "f16", torch.randn([| 3L; 5L |]).to_type(torch.ScalarType.Float16)
                      "bf16", torch.randn([| 4L; 2L; 3L |]).to_type(torch.ScalarType.BFloat16)
                      "f64", torch.randn([| 7L |], dtype = torch.ScalarType.Float64)
                      "i64", torch.tensor([| Int64.MaxValue; Int64.MinValue; 0L; -1L; 123456789012345L |])
                      "i32", torch.tensor([| Int32.MinValue; 7; -7 |])
                      "i16", torch.tensor([| Int16.MaxValue; -3s |])
                      "i8", torch.tensor([| -128y; 127y |])
                      "u8", torch.tensor([| 0uy; 255uy; 9uy |])
                      "bool", torch.tensor([| true; false; true |])
                      // non-contiguous input: saved as its logical (contiguous) layout
                      "transposed", torch.arange(6L, dtype = torch.ScalarType.Float32).reshape(2L, 3L).t() ]
                let path = Path.Combine(dir, "rt.safetensors")
                Safetensors.Save(path, src |> List.map (fun (n, t) -> kv n t))
                let back = Safetensors.Load path
                Expect.equal back.Count src.Length "all tensors back"
                for (n, t) in src do
                    let b = back[n]
                    Expect.equal b.dtype t.dtype $"{n} dtype"
                    Expect.equal b.shape t.shape $"{n} shape"
                    Expect.equal (bytesOf b) (bytesOf t) $"{n} bytes"
                    Expect.equal b.device_type DeviceType.CPU $"{n} on CPU"
                Expect.equal (back["transposed"].data<float32>().ToArray()) [| 0.0f; 3.0f; 1.0f; 4.0f; 2.0f; 5.0f |] "transposed values in logical order")
        }

        test "metadata round-trips; none gives an empty map" {
            withTempDir (fun dir ->
                let p1 = Path.Combine(dir, "m.safetensors")
                let meta = readOnlyDict [ "format", "pt"; "step", "1200"; "note", "ünïcode \"quoted\"" ]
                Safetensors.Save(p1, [ kv "w" (f32 [| 1.0f |]) ], meta)
                use f = SafetensorsFile.Open p1
                Expect.equal (f.Metadata |> Seq.map (fun kv -> kv.Key, kv.Value) |> Set.ofSeq)
                             (meta |> Seq.map (fun kv -> kv.Key, kv.Value) |> Set.ofSeq) "metadata"
                let p2 = Path.Combine(dir, "n.safetensors")
                Safetensors.Save(p2, [ kv "w" (f32 [| 1.0f |]) ])
                use g = SafetensorsFile.Open p2
                Expect.equal g.Metadata.Count 0 "no metadata")
        }

        test "scalar and zero-size shapes" {
            withTempDir (fun dir ->
                let path = Path.Combine(dir, "s.safetensors")
                let scalar = torch.tensor(42.5f)
                let empty0 = torch.zeros([| 0L; 3L |])
                let empty1 = torch.zeros([| 2L; 0L; 5L |], dtype = torch.ScalarType.Int64)
                Safetensors.Save(path, [ kv "scalar" scalar; kv "e0" empty0; kv "e1" empty1; kv "after" (f32 [| 9.0f |]) ])
                use f = SafetensorsFile.Open path
                let s = f.Read "scalar"
                Expect.equal s.shape [||] "scalar shape []"
                Expect.equal (s.item<float32>()) 42.5f "scalar value"
                Expect.equal (f.Read "e0").shape [| 0L; 3L |] "zero-size shape"
                Expect.equal (f.Read "e1").shape [| 2L; 0L; 5L |] "zero-size shape 3d"
                Expect.equal (f.Read "e1").dtype torch.ScalarType.Int64 "zero-size dtype"
                Expect.equal ((f.Read "after").item<float32>()) 9.0f "tensor after empties"
                let e = f.Entries |> Seq.find (fun e -> e.Name = "scalar")
                Expect.equal e.Shape [||] "entry shape []"
                Expect.equal (e.End - e.Begin) 4L "scalar F32 is 4 bytes")
        }

        test "written header is space-padded to 8-byte alignment and starts the data at 8 + N" {
            withTempDir (fun dir ->
                for name in [ "a"; "ab"; "abc"; "abcd"; "abcde"; "abcdef"; "abcdefg"; "abcdefgh" ] do
                    let path = Path.Combine(dir, name + ".safetensors")
                    Safetensors.Save(path, [ kv name (f32 [| 1.0f; 2.0f |]) ])
                    let bytes = File.ReadAllBytes path
                    let n = BinaryPrimitives.ReadUInt64LittleEndian(ReadOnlySpan<byte>(bytes, 0, 8))
                    Expect.equal (n % 8UL) 0UL $"header length {n} aligned for {name}"
                    Expect.equal (int64 bytes.Length) (8L + int64 n + 8L) "file = 8 + header + 8 data bytes"
                    let header = Encoding.UTF8.GetString(bytes, 8, int n)
                    Expect.isTrue (header.TrimEnd(' ').EndsWith "}") "JSON then spaces only"
                    use doc = JsonDocument.Parse header
                    let entry = doc.RootElement.GetProperty name
                    Expect.equal (entry.GetProperty("dtype").GetString()) "F32" "dtype"
                    Expect.equal (entry.GetProperty("data_offsets").[1].GetInt64()) 8L "end offset"
                    Expect.equal (BitConverter.ToSingle(bytes, 8 + int n + 4)) 2.0f "raw little-endian data after header")
        }

        test "hand-built file (unpadded header, Hugging Face layout) reads back known values" {
            withTempDir (fun dir ->
                let path = Path.Combine(dir, "hand.safetensors")
                let json =
                    """{"__metadata__":{"format":"pt"},"c":{"dtype":"I64","shape":[1],"data_offsets":[14,22]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]},"h":{"dtype":"F16","shape":[],"data_offsets":[12,14]},"u":{"dtype":"U8","shape":[3],"data_offsets":[22,25]}}"""
                let data =
                    Array.concat [
                        BitConverter.GetBytes 1.5f; BitConverter.GetBytes -2.0f      // a
                        [| 0x80uy; 0x3Fuy; 0x20uy; 0xC0uy |]                          // b: bf16 1.0, -2.5
                        [| 0x00uy; 0x3Cuy |]                                          // h: f16 1.0
                        BitConverter.GetBytes(-3L)                                   // c
                        [| 1uy; 2uy; 250uy |] ]                                       // u
                writeRaw path json data
                use f = SafetensorsFile.Open path
                Expect.equal f.Metadata["format"] "pt" "metadata"
                Expect.equal (f.Entries |> Seq.map (fun e -> e.Name) |> List.ofSeq) [ "a"; "b"; "h"; "c"; "u" ] "entries in file order"
                let a = f.Read "a"
                Expect.equal a.dtype torch.ScalarType.Float32 "a dtype"
                Expect.equal (a.data<float32>().ToArray()) [| 1.5f; -2.0f |] "a values"
                let b = f.Read "b"
                Expect.equal b.dtype torch.ScalarType.BFloat16 "b dtype"
                Expect.equal b.shape [| 1L; 2L |] "b shape"
                Expect.equal (b.to_type(torch.ScalarType.Float32).data<float32>().ToArray()) [| 1.0f; -2.5f |] "b values"
                let h = f.Read "h"
                Expect.equal h.dtype torch.ScalarType.Float16 "h dtype"
                Expect.equal (h.to_type(torch.ScalarType.Float32).item<float32>()) 1.0f "h value"
                Expect.equal ((f.Read "c").item<int64>()) -3L "c value"
                Expect.equal ((f.Read "u").data<byte>().ToArray()) [| 1uy; 2uy; 250uy |] "u values"
                // fresh memory: the tensor outlives the map
                let keep = f.Read "a"
                f.Dispose()
                Expect.equal (keep.data<float32>().ToArray()) [| 1.5f; -2.0f |] "readable after the file is closed")
        }

        test "sharded save writes HF-named shards and an index; LoadDirectory reads them; re-save to one file cleans up" {
            withTempDir (fun dir ->
                let src = [ for i in 0 .. 4 -> $"layer.{i}.weight", f32 (Array.create 100 (float32 i)) ]  // 400 bytes each
                Safetensors.SaveSharded(dir, src |> List.map (fun (n, t) -> kv n t), 1000L)
                let files = Directory.GetFiles dir |> Array.map fileName |> Array.sort
                Expect.equal files
                    [| "model-00001-of-00003.safetensors"; "model-00002-of-00003.safetensors"
                       "model-00003-of-00003.safetensors"; "model.safetensors.index.json" |] "shard + index names"
                use doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "model.safetensors.index.json")))
                Expect.equal (doc.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64()) 2000L "total_size"
                let wm = doc.RootElement.GetProperty "weight_map"
                Expect.equal (wm.GetProperty("layer.0.weight").GetString()) "model-00001-of-00003.safetensors" "first shard"
                Expect.equal (wm.GetProperty("layer.2.weight").GetString()) "model-00002-of-00003.safetensors" "second shard"
                Expect.equal (wm.GetProperty("layer.4.weight").GetString()) "model-00003-of-00003.safetensors" "third shard"
                let back = Safetensors.LoadDirectory dir
                Expect.equal back.Count 5 "all tensors"
                for (n, t) in src do Expect.isTrue (same back[n] t) n
                // everything fits: single file, old shards and index removed
                Safetensors.SaveSharded(dir, src |> List.map (fun (n, t) -> kv n t), 1L <<< 30)
                Expect.equal (Directory.GetFiles dir |> Array.map fileName) [| "model.safetensors" |] "single file only"
                Expect.equal (Safetensors.LoadDirectory dir).Count 5 "single-file directory loads")
        }

        test "checkpoint directory errors name the directory, shard and tensor" {
            withTempDir (fun dir ->
                let missing = Path.Combine(dir, "nope")
                expectError missing None [ "not found" ] (fun () -> Safetensors.LoadDirectory missing |> ignore)
                let emptyDir = Path.Combine(dir, "empty")
                Directory.CreateDirectory emptyDir |> ignore
                expectError emptyDir None [ "model.safetensors.index.json" ] (fun () -> Safetensors.LoadDirectory emptyDir |> ignore)
                let ck = Path.Combine(dir, "ck")
                Safetensors.SaveSharded(ck, [ kv "x" (f32 [| 1.0f; 2.0f |]); kv "y" (f32 [| 3.0f; 4.0f |]) ], 8L)
                let shard2 = Path.Combine(ck, "model-00002-of-00002.safetensors")
                File.Delete shard2
                expectError shard2 (Some "y") [ "does not exist" ] (fun () -> Safetensors.LoadDirectory ck |> ignore)
                // index pointing a tensor at a shard that lacks it
                Safetensors.Save(shard2, [ kv "z" (f32 [| 0.0f; 0.0f |]) ])
                expectError shard2 (Some "y") [ "does not hold" ] (fun () -> Safetensors.LoadDirectory ck |> ignore)
                // index escaping the directory
                let index = Path.Combine(ck, "model.safetensors.index.json")
                File.WriteAllText(index, """{"metadata":{},"weight_map":{"x":"../evil.safetensors"}}""")
                expectError index (Some "x") [ "plain file name" ] (fun () -> Safetensors.LoadDirectory ck |> ignore)
                File.WriteAllText(index, """{"weight_map": [""")
                expectError index None [ "JSON" ] (fun () -> Safetensors.LoadDirectory ck |> ignore))
        }

        test "missing, directory and too-short files" {
            withTempDir (fun dir ->
                let missing = Path.Combine(dir, "absent.safetensors")
                expectError missing None [ "not found"; "Check the path" ] (fun () -> SafetensorsFile.Open missing |> ignore)
                expectError dir None [ "LoadDirectory" ] (fun () -> SafetensorsFile.Open dir |> ignore)
                let short = Path.Combine(dir, "short.safetensors")
                File.WriteAllBytes(short, [| 1uy; 2uy; 3uy |])
                expectError short None [ "shorter than" ] (fun () -> SafetensorsFile.Open short |> ignore)
                let zero = Path.Combine(dir, "zero.safetensors")
                File.WriteAllBytes(zero, [||])
                expectError zero None [ "0 bytes" ] (fun () -> Safetensors.Load zero |> ignore))
        }

        test "absurd header lengths fail fast without allocating" {
            withTempDir (fun dir ->
                let huge = Path.Combine(dir, "huge.safetensors")
                writeHeaderLength huge (1UL <<< 62) (Encoding.UTF8.GetBytes "{}")
                let max = Path.Combine(dir, "max.safetensors")
                writeHeaderLength max UInt64.MaxValue (Encoding.UTF8.GetBytes "{}")
                let past = Path.Combine(dir, "past.safetensors")   // 50 MB claimed, 100 bytes present
                writeHeaderLength past 50_000_000UL (Array.create 100 (byte ' '))
                // warm up (JIT) on a good file so the timing below measures the failure path
                let warm = Path.Combine(dir, "warm.safetensors")
                Safetensors.Save(warm, [ kv "w" (f32 [| 1.0f |]) ])
                (SafetensorsFile.Open warm).Dispose()
                (try SafetensorsFile.Open huge |> ignore with :? SafetensorsException -> ())
                for p in [ huge; max; past ] do
                    let sw = Diagnostics.Stopwatch.StartNew()
                    let before = GC.GetAllocatedBytesForCurrentThread()
                    expectError p None [ "header length" ] (fun () -> SafetensorsFile.Open p |> ignore)
                    let allocated = GC.GetAllocatedBytesForCurrentThread() - before
                    Expect.isLessThan allocated 5_000_000L $"allocated {allocated} bytes for {fileName p}"
                    Expect.isLessThan sw.ElapsedMilliseconds 2000L "fails fast")
        }

        test "malformed JSON, wrong header shapes and unknown dtype" {
            withTempDir (fun dir ->
                let p = Path.Combine(dir, "bad.safetensors")
                writeRaw p """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]""" (Array.zeroCreate 4)
                expectError p None [ "not valid JSON" ] (fun () -> SafetensorsFile.Open p |> ignore)
                writeRaw p """[1,2,3]""" [||]
                expectError p None [ "expected an object" ] (fun () -> SafetensorsFile.Open p |> ignore)
                writeRaw p """{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}""" (Array.zeroCreate 4)
                expectError p (Some "a") [ "unknown dtype 'Q4'" ] (fun () -> SafetensorsFile.Open p |> ignore)
                writeRaw p """{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""" (Array.zeroCreate 4)
                expectError p (Some "a") [ "non-negative" ] (fun () -> SafetensorsFile.Open p |> ignore)
                writeRaw p """{"a":{"dtype":"F32","shape":[1]}}""" (Array.zeroCreate 4)
                expectError p (Some "a") [ "data_offsets" ] (fun () -> SafetensorsFile.Open p |> ignore)
                writeRaw p """{"__metadata__":{"step":3}}""" [||]
                expectError p None [ "__metadata__" ] (fun () -> SafetensorsFile.Open p |> ignore))
        }

        test "offsets out of range, end before begin, size mismatch, truncated data" {
            withTempDir (fun dir ->
                let p = Path.Combine(dir, "off.safetensors")
                writeRaw p """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""" (Array.zeroCreate 8)
                expectError p (Some "b") [ "past the end" ] (fun () -> SafetensorsFile.Open p |> ignore)
                writeRaw p """{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}""" (Array.zeroCreate 8)
                expectError p (Some "a") [ "end is before begin" ] (fun () -> SafetensorsFile.Open p |> ignore)
                writeRaw p """{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""" (Array.zeroCreate 8)
                expectError p (Some "a") [ "needs 12" ] (fun () -> SafetensorsFile.Open p |> ignore)
                writeRaw p """{"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,16]}}""" (Array.zeroCreate 16)
                expectError p (Some "a") [ "needs 8" ] (fun () -> SafetensorsFile.Open p |> ignore)
                // a valid file cut short: the last tensor runs past the end
                let good = Path.Combine(dir, "cut.safetensors")
                Safetensors.Save(good, [ kv "first" (f32 [| 1.0f; 2.0f |]); kv "second" (f32 [| 3.0f; 4.0f; 5.0f |]) ])
                let bytes = File.ReadAllBytes good
                File.WriteAllBytes(good, bytes[.. bytes.Length - 3])
                expectError good (Some "second") [ "truncated" ] (fun () -> Safetensors.Load good |> ignore))
        }

        test "huge dimensions whose product overflows are refused at open, even beside a zero dimension" {
            withTempDir (fun dir ->
                let p = Path.Combine(dir, "huge.safetensors")
                // empty (one dimension is 0) but the strides of the others overflow: this reached libtorch before
                writeRaw p """{"e":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}}""" [||]
                expectError p (Some "e") [ "too large"; "overflows" ] (fun () -> SafetensorsFile.Open p |> ignore)
                writeRaw p """{"e":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}}""" [||]
                expectError p (Some "e") [ "too large" ] (fun () -> SafetensorsFile.Open p |> ignore)
                // the product fits but disagrees with the byte range
                writeRaw p """{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,12]}}""" (Array.zeroCreate 12)
                expectError p (Some "e") [ "needs 0" ] (fun () -> SafetensorsFile.Open p |> ignore))
        }

        test "overlapping tensors, holes and trailing bytes are refused" {
            withTempDir (fun dir ->
                let p = Path.Combine(dir, "layout.safetensors")
                writeRaw p """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""" (Array.zeroCreate 12)
                expectError p (Some "b") [ "overlaps"; "'a'" ] (fun () -> SafetensorsFile.Open p |> ignore)
                writeRaw p """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""" (Array.zeroCreate 12)
                expectError p (Some "b") [ "no tensor" ] (fun () -> SafetensorsFile.Open p |> ignore)
                writeRaw p """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""" (Array.zeroCreate 12)
                expectError p (Some "a") [ "8 trailing bytes" ] (fun () -> SafetensorsFile.Open p |> ignore)
                // zero-size tensors sharing an offset are fine
                writeRaw p """{"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"f":{"dtype":"I8","shape":[0,2],"data_offsets":[4,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""" (Array.zeroCreate 8)
                use f = SafetensorsFile.Open p
                Expect.equal f.Entries.Count 4 "empties at a shared offset accepted")
        }

        test "chunked copies (forced tiny chunks) give the same bytes and values" {
            withTempDir (fun dir ->
                let field =
                    match typeof<Safetensors>.GetField("ChunkBytes", Reflection.BindingFlags.NonPublic ||| Reflection.BindingFlags.Static) with
                    | null -> failtest "ChunkBytes field not found"
                    | f -> f
                let original = field.GetValue null
                let src =
                    [ "f32", torch.randn([| 13L; 7L |])
                      "bf16", torch.randn([| 101L |]).to_type(torch.ScalarType.BFloat16)
                      "i8", torch.arange(200L, dtype = torch.ScalarType.Int64).remainder(torch.tensor(100L)).to_type(torch.ScalarType.Int8) ]
                let path = Path.Combine(dir, "chunks.safetensors")
                let plainPath = Path.Combine(dir, "plain.safetensors")
                Safetensors.Save(plainPath, src |> List.map (fun (n, t) -> kv n t))
                try
                    field.SetValue(null, box 7L)   // not a multiple of any element size
                    Safetensors.Save(path, src |> List.map (fun (n, t) -> kv n t))
                    let back = Safetensors.Load path
                    for (n, t) in src do Expect.isTrue (same back[n] t) $"{n} round-trips through chunks"
                finally
                    field.SetValue(null, original)
                Expect.equal (File.ReadAllBytes path) (File.ReadAllBytes plainPath) "chunked write = plain write")
        }

        test "BOOL data other than 0/1 is refused on read" {
            withTempDir (fun dir ->
                let p = Path.Combine(dir, "bool.safetensors")
                writeRaw p """{"flags":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}}""" [| 1uy; 0uy; 7uy |]
                use f = SafetensorsFile.Open p
                expectError p (Some "flags") [ "not 0 or 1" ] (fun () -> f.Read "flags" |> ignore))
        }

        test "unknown tensor name, duplicate names and unsupported dtypes on save" {
            withTempDir (fun dir ->
                let p = Path.Combine(dir, "names.safetensors")
                Safetensors.Save(p, [ kv "present" (f32 [| 1.0f |]) ])
                use f = SafetensorsFile.Open p
                Expect.isTrue (f.Contains "present") "contains"
                Expect.isFalse (f.Contains "absent") "does not contain"
                expectError p (Some "absent") [ "no tensor named" ] (fun () -> f.Read "absent" |> ignore)
                let q = Path.Combine(dir, "dup.safetensors")
                expectError q (Some "x") [ "twice" ] (fun () -> Safetensors.Save(q, [ kv "x" (f32 [| 1.0f |]); kv "x" (f32 [| 2.0f |]) ]))
                let c = torch.zeros([| 2L |], dtype = torch.ScalarType.ComplexFloat32)
                expectError q (Some "c") [ "ComplexFloat32" ] (fun () -> Safetensors.Save(q, [ kv "c" c ]))
                Expect.isFalse (File.Exists q) "nothing written on a refused save"
                Expect.isEmpty (Directory.GetFiles(dir, "*.tmp")) "no temp files left")
        }
        test "zero-copy views: same values as a copy, outlive the file object, and writing to one never changes the file" {
            withTempDir (fun dir ->
                let p = Path.Combine(dir, "views.safetensors")
                let w = torch.arange(12.0f).reshape(3L, 4L).to_type(torch.float32)
                let h = torch.tensor([| 1.5f; -2.0f |]).to_type(torch.bfloat16)
                Safetensors.Save(p, [ kv "w" w; kv "h" h; kv "flags" (torch.tensor([| true; false |])) ])
                let before = File.ReadAllBytes p
                let f = SafetensorsFile.Open p
                let v = f.View "w"
                let vh = f.View "h"
                use flags = f.View "flags"                                   // BOOL: validated, so copied
                Expect.isTrue (same v w) "float32 view equals the saved tensor"
                Expect.isTrue (same vh h) "bf16 view equals the saved tensor"
                Expect.isTrue (same flags (torch.tensor([| true; false |]))) "bool tensor"
                f.Dispose()
                Expect.throwsT<ObjectDisposedException> (fun () -> f.View "w" |> ignore) "no new views after Dispose"
                Expect.equal (v.sum().item<float32>()) 66.0f "a view stays readable after the file object is disposed"
                v.add_(torch.tensor(100.0f)) |> ignore                       // copy-on-write: the process's own pages
                Expect.equal (v.sum().item<float32>()) 1266.0f "the write is visible in the view"
                v.Dispose()
                vh.Dispose()
                Expect.equal (File.ReadAllBytes p) before "the file is unchanged"
                use g = SafetensorsFile.Open p
                use again = g.View "w"
                Expect.isTrue (same again w) "a new view reads the original values")
        }
        test "Save/SaveSharded and the streaming writer write byte-identical files for the same tensors and shard bound" {
            withTempDir (fun dir ->
                // Given out of name order, in several dtypes, with a scalar, an empty and a non-contiguous tensor.
                let src =
                    [ "zeta.weight", torch.randn([| 5L; 6L |])
                      "alpha", torch.arange(7L, dtype = torch.ScalarType.Int64)
                      "Beta.bias", torch.randn([| 40L |]).to_type(torch.ScalarType.BFloat16)
                      "empty", torch.zeros([| 0L; 3L |])
                      "flags", torch.tensor([| true; false; true |])
                      "scalar", torch.tensor(2.5f)
                      "mid.x", torch.randn([| 10L; 10L |], dtype = torch.ScalarType.Float64).t() ]
                let tensors () = src |> List.map (fun (n, t) -> kv n t)
                let plan =
                    src |> List.map (fun (n, t) ->
                        match Safetensors.TryDTypeOf t.dtype with
                        | true, code -> PlannedTensor(n, code, t.shape)
                        | _ -> failtest $"{n}: no safetensors dtype")
                let stream (out: string) (bound: int64) (metadata: IReadOnlyDictionary<string, string> option) =
                    use w = new ShardedSafetensorsWriter(out, ResizeArray plan, bound, Option.toObj metadata)
                    for (n, t) in src do w.Add(n, t)
                    w.Finish()
                let filesOf (d: string) =
                    Directory.GetFiles d |> Array.sort |> Array.map (fun f -> fileName f, File.ReadAllBytes f)
                for bound in [ 1L; 100L; 400L; 1000L; 1L <<< 30 ] do
                    let saved = Path.Combine(dir, $"saved-{bound}")
                    let streamed = Path.Combine(dir, $"streamed-{bound}")
                    Safetensors.SaveSharded(saved, tensors (), bound)
                    stream streamed bound None
                    let a, b = filesOf saved, filesOf streamed
                    Expect.equal (Array.map fst b) (Array.map fst a) $"bound {bound}: same file names"
                    for (name, bytes), (_, other) in Array.zip a b do Expect.equal other bytes $"bound {bound}: {name} byte-identical"
                    Expect.equal (a.Length = 1) (bound = (1L <<< 30)) $"bound {bound}: one file only when everything fits"
                // A single file with metadata: Save against the streaming writer under a bound everything fits in.
                let meta = readOnlyDict [ "format", "pt"; "step", "3" ]
                let single = Path.Combine(dir, "single.safetensors")
                Safetensors.Save(single, tensors (), meta)
                let streamed = Path.Combine(dir, "streamed-single")
                stream streamed (1L <<< 30) (Some meta)
                Expect.equal (File.ReadAllBytes(Path.Combine(streamed, Safetensors.SingleFileName))) (File.ReadAllBytes single) "Save = streamed single file"
                Expect.isEmpty (Directory.GetFiles(dir, "*.tmp", SearchOption.AllDirectories)) "no temp files left")
        }
    ]
