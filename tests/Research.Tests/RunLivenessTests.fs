/// Issue #20, defect 13: a run whose process was killed must not show `running` forever.
module Research.Tests.RunLivenessTests

open System
open System.Diagnostics
open System.IO
open Expecto
open Microsoft.Data.Sqlite
open Research.Runs
open Research.Tests.TestUtil

/// Runs SQL on a workspace's SQLite store behind the RunStore's back: what another process (or an older build) wrote.
let private sql (ws: string) (text: string) (args: (string * obj) list) =
    use db = new SqliteConnection($"Data Source={Path.Combine(ws, RunStore.FileName)};Pooling=False")
    db.Open()
    use cmd = db.CreateCommand()
    cmd.CommandText <- text
    for name, value in args do cmd.Parameters.AddWithValue(name, value) |> ignore
    cmd.ExecuteScalar()

/// The identity of a process that ran and was killed.
let private killedProcess () =
    use child = Process.Start(ProcessStartInfo("sleep", "60", UseShellExecute = false))
    let who = ProcessIdentity.Of child.Id
    child.Kill()
    child.WaitForExit()
    Expect.isSome (Option.ofObj who) "the child was seen running"
    who

let private status (store: RunStore) id = (store.Run id).Status

let private node runId = NodeRecord(runId, "k" + string runId, "pretrain", "pretrain", "{}", "[]", "running", "2026-01-01T00:00:00Z", null, 0.0, null)

[<Tests>]
let tests =
    testList "ReliabilityRuns" [
        testCase "a run whose process was killed shows interrupted, with its running nodes; a live one stays running" <| fun _ ->
            let ws = tempDir "killed-run"
            use store = new RunStore(ws)
            let killed = store.StartRun("e", "-", 1L)
            store.UpsertNode(node killed)
            sql ws "UPDATE runs SET process = @p WHERE id = @id" [ "@p", box (string (killedProcess ())); "@id", box killed ] |> ignore
            let live = store.StartRun("e", "-", 1L)
            store.UpsertNode(node live)
            Expect.equal (status store killed) "interrupted" "the killed run"
            Expect.equal (store.Nodes killed |> Seq.map _.Status |> List.ofSeq) [ "interrupted" ] "its node"
            Expect.equal (status store live) "running" "this process's run"
            Expect.equal (store.Nodes live |> Seq.map _.Status |> List.ofSeq) [ "running" ] "its node"
            store.FinishRun(killed, "done")
            Expect.equal (status store killed) "done" "a finished run keeps its status"

        testCase "a reused pid is not the run's process: the start time differs" <| fun _ ->
            let ws = tempDir "reused-pid"
            use store = new RunStore(ws)
            let id = store.StartRun("e", "-", 1L)
            let me = ProcessIdentity.Current
            Expect.isTrue (ProcessIdentity.IsRunning me) "this process runs"
            sql ws "UPDATE runs SET process = @p WHERE id = @id" [ "@p", box (string (ProcessIdentity(me.Pid, me.StartTicks + 1L, me.BootId))); "@id", box id ] |> ignore
            Expect.equal (status store id) "interrupted" "same pid, another start"

        testCase "a run on another host is interrupted once its heartbeat is stale, running again after a beat" <| fun _ ->
            let ws = tempDir "other-host"
            use store = new RunStore(ws)
            let id = store.StartRun("e", "-", 1L)
            let stale = DateTimeOffset.UtcNow - RunLiveness.StaleAfter - TimeSpan.FromMinutes 1.0
            sql ws "UPDATE runs SET host = 'elsewhere', heartbeat = @t WHERE id = @id" [ "@t", box (stale.ToString "O"); "@id", box id ] |> ignore
            Expect.equal (status store id) "interrupted" "no beat for too long"
            store.Beat id
            Expect.equal (status store id) "running" "a fresh beat"

        testCase "a version-1 store is migrated on open; its runs left running long ago show interrupted" <| fun _ ->
            let ws = tempDir "v1-store"
            sql ws """
                CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
                CREATE TABLE experiments(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL);
                CREATE TABLE runs(id INTEGER PRIMARY KEY AUTOINCREMENT, experiment_id INTEGER NOT NULL REFERENCES experiments(id),
                    point TEXT NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL, started TEXT NOT NULL, finished TEXT, pid INTEGER);
                INSERT INTO meta VALUES('schema_version', '1');
                INSERT INTO experiments(name, created) VALUES('old', '2025-01-01T00:00:00Z');
                INSERT INTO runs(experiment_id, point, seed, status, started, pid) VALUES(1, '-', 1, 'running', '2025-01-01T00:00:00Z', 4242);
                INSERT INTO runs(experiment_id, point, seed, status, started, finished, pid) VALUES(1, '-', 1, 'done', '2025-01-01T00:00:00Z', '2025-01-01T01:00:00Z', 4243);
                """ [] |> ignore
            use store = new RunStore(ws)
            Expect.equal (sql ws "SELECT value FROM meta WHERE key = 'schema_version'" [] |> string) "2" "migrated"
            Expect.equal (store.Runs() |> Seq.map _.Status |> List.ofSeq) [ "interrupted"; "done" ] "old rows"
            let id = store.StartRun("old", "-", 1L)
            Expect.equal (status store id) "running" "a new run in the migrated store"
            use again = new RunStore(ws)
            Expect.equal (again.Runs().Count) 3 "opens again without migrating twice"

        testCase "a store newer than this build is refused, naming the file" <| fun _ ->
            let ws = tempDir "v9-store"
            sql ws "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT); INSERT INTO meta VALUES('schema_version', '9');" [] |> ignore
            throwsWith<InvalidDataException> (fun () -> new RunStore(ws) |> ignore) [ RunStore.FileName; "version 9" ] "newer store"
    ]
