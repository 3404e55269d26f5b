/// The layers of Research.Core (docs/architecture.md): a namespace may use its own layer and the layers below it,
/// never one above. Checked on the compiled assembly, not on `using` lines, so that a partly qualified name
/// (`Cluster.SlurmSubmitter` inside Research.Pipelines), a type in a signature, a local variable or a call in a
/// method body all count.
module Research.Tests.LayerTests

open System
open System.IO
open System.Reflection
open System.Reflection.Emit
open Expecto
open Research.Tests.TestUtil

/// Bottom to top. The second part of a namespace names its layer (Research.Stages.Merge is in Stages).
let layers = [ "Backend"; "Runs"; "Data"; "Models"; "Training"; "Eval"; "Selection"; "Stages"; "Pipelines"; "Cluster"; "Laws"; "Bench" ]

let private rankIn (order: string list) (ns: string) =
    match ns with
    | null -> None
    | ns ->
        let parts = ns.Split '.'
        if parts.Length < 2 || parts[0] <> "Research" then None
        else List.tryFindIndex ((=) parts[1]) order

let private rank = rankIn layers

let private opCodes =
    typeof<OpCodes>.GetFields(BindingFlags.Public ||| BindingFlags.Static)
    |> Array.map (fun f -> f.GetValue null :?> OpCode)
    |> Array.map (fun o -> uint16 o.Value, o)
    |> dict

let private operandSize (o: OpCode) (il: byte[]) (at: int) =
    match o.OperandType with
    | OperandType.InlineNone -> 0
    | OperandType.ShortInlineBrTarget | OperandType.ShortInlineI | OperandType.ShortInlineVar -> 1
    | OperandType.InlineVar -> 2
    | OperandType.InlineI8 | OperandType.InlineR -> 8
    | OperandType.InlineSwitch -> 4 + 4 * BitConverter.ToInt32(il, at)
    | _ -> 4

/// The types a method body names: in calls, field accesses, type tokens and its locals.
let private bodyTypes (m: MethodBase) =
    match (try m.GetMethodBody() with _ -> null) with
    | null -> []
    | body ->
        let il = body.GetILAsByteArray()
        let typeArgs = if m.DeclaringType.IsGenericType then m.DeclaringType.GetGenericArguments() else [||]
        let methodArgs = if m.IsGenericMethod then m.GetGenericArguments() else [||]
        let found = ResizeArray<Type>()
        for l in body.LocalVariables do found.Add l.LocalType
        let mutable i = 0
        while i < il.Length do
            let code = if il[i] = 0xFEuy then (i <- i + 1; 0xFE00us ||| uint16 il[i]) else uint16 il[i]
            i <- i + 1
            let o = opCodes[code]
            match o.OperandType with
            | OperandType.InlineMethod | OperandType.InlineField | OperandType.InlineType | OperandType.InlineTok ->
                let token = BitConverter.ToInt32(il, i)
                try
                    match m.Module.ResolveMember(token, typeArgs, methodArgs) with
                    | :? Type as t -> found.Add t
                    | :? MethodBase as mb ->
                        found.Add mb.DeclaringType
                        match mb with
                        | :? MethodInfo as mi -> found.Add mi.ReturnType
                        | _ -> ()
                        for p in mb.GetParameters() do found.Add p.ParameterType
                    | :? FieldInfo as f -> found.Add f.DeclaringType; found.Add f.FieldType
                    | mi -> found.Add mi.DeclaringType
                with _ -> ()
            | _ -> ()
            i <- i + operandSize o il i
        List.ofSeq found

/// A type and the types inside it (arrays, by-refs, generic arguments).
let rec private expand (t: Type) : Type list =
    if isNull t then []
    elif t.HasElementType then expand (t.GetElementType())
    elif t.IsGenericType && not t.IsGenericTypeDefinition then
        t.GetGenericTypeDefinition() :: (t.GetGenericArguments() |> Seq.collect expand |> List.ofSeq)
    else [ t ]

let private flags = BindingFlags.Public ||| BindingFlags.NonPublic ||| BindingFlags.Instance ||| BindingFlags.Static ||| BindingFlags.DeclaredOnly

/// Every type that a type of the assembly names in its base, interfaces, members' signatures and method bodies.
let private uses (t: Type) =
    let methods = Seq.append (t.GetMethods flags |> Seq.cast<MethodBase>) (t.GetConstructors flags |> Seq.cast<MethodBase>)
    [ yield t.BaseType
      yield! t.GetInterfaces()
      for f in t.GetFields flags do yield f.FieldType
      for p in t.GetProperties flags do yield p.PropertyType
      for m in methods do
          match m with
          | :? MethodInfo as mi -> yield mi.ReturnType
          | _ -> ()
          for p in m.GetParameters() do yield p.ParameterType
          yield! bodyTypes m ]
    |> List.collect expand

/// Every use of a higher layer under this order, as "Research.Data.X (Data) uses Research.Eval.Y (Eval)".
let violations (order: string list) (assembly: Assembly) =
    let rank = rankIn order
    [ for t in assembly.GetTypes() do
        match rank t.Namespace with
        | Some own ->
            for u in uses t |> List.distinct do
                match rank u.Namespace with
                | Some other when other > own ->
                    let name (x: Type) = (if isNull x.DeclaringType then x.FullName else x.DeclaringType.FullName)
                    yield $"{name t} ({order[own]}) uses {name u} ({order[other]})"
                | _ -> ()
        | None -> () ]
    |> List.distinct |> List.sort

let private coreAssembly = typeof<Research.Runs.RunStore>.Assembly

[<Tests>]
let tests =
    testList "Layers" [
        test "no namespace of Research.Core uses a layer above its own" {
            let v = violations layers coreAssembly
            let order = String.Join(" → ", layers)
            let found = String.Join("\n  ", v)
            Expect.isEmpty v $"layer violations (bottom to top: {order}):\n  {found}"
        }

        test "every namespace of Research.Core is in a layer, and its folder shows it" {
            let unplaced =
                coreAssembly.GetTypes()
                |> Array.filter (fun t -> t.IsPublic && (rank t.Namespace).IsNone)
                |> Array.map (fun t -> t.FullName)
            Expect.isEmpty unplaced "public types outside the layers"
            let src = Path.Combine(repoRoot, "src", "Research.Core")
            let misplaced =
                [ for f in Directory.GetFiles(src, "*.cs", SearchOption.AllDirectories) do
                    let rel = Path.GetRelativePath(src, f).Replace('\\', '/')
                    if not (rel.StartsWith "bin/" || rel.StartsWith "obj/") && rel.Contains "/" then
                        let folder = rel.Split('/')[0]
                        for line in File.ReadLines f do
                            if line.StartsWith "namespace " then
                                let ns = line.Substring(10).TrimEnd(';', ' ')
                                if ns <> $"Research.{folder}" && not (ns.StartsWith $"Research.{folder}.") then
                                    yield $"{rel} declares {ns}" ]
            Expect.isEmpty misplaced "files whose namespace is not their folder's"
        }

        test "docs/architecture.md states the same layers" {
            let doc = File.ReadAllText(Path.Combine(repoRoot, "docs", "architecture.md"))
            let line = String.Join(" → ", layers)
            Expect.stringContains doc line "the layer order written in docs/architecture.md"
        }

        test "the check finds a use of a higher layer" {
            // Turned upside down, every use of a lower layer is a violation: the scan must see them, in
            // signatures and in method bodies alike (Bench calls into Data only inside its methods).
            let v = violations (List.rev layers) coreAssembly
            Expect.exists v (fun s -> s.StartsWith "Research.Bench." && s.EndsWith "(Data)") "Bench's use of Data, seen upside down"
            Expect.exists v (fun s -> s.StartsWith "Research.Models." && s.EndsWith "(Runs)") "Models' use of Runs, seen upside down"
        }
    ]
