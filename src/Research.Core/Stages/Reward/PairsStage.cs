using System.Text.Json;
using Research.Data;
using Research.Models;
using Research.Runs;
using Research.Stages.Online;

namespace Research.Stages.Reward;

/// <summary>
/// Kind "pairs": samples N candidates per prompt from the parent (<see cref="Rollouts.Sample"/>), scores them with the judge,
/// keeps best vs worst (<see cref="PairRule"/>) and writes them as data: pairs.jsonl (the kept pairs: prompt, chosen, rejected,
/// both scores, every candidate's score), candidates.jsonl (every prompt, kept or not, with its candidates), and metrics.jsonl
/// rows the executor stores in the run store: per prompt (kind "pairs": best, worst, gap, kept) and per candidate (kind
/// "candidates": prompt, score, chosen, rejected). final/ is the parent policy re-saved, the start of the DPO after it.
/// </summary>
public sealed class PairsExecutor : IStageExecutor
{
    public const string CandidatesFile = "candidates.jsonl";
    public const string ReportFile = "pairs_report.json";

    public string Kind => "pairs";
    public Type Options => typeof(PairsOptions);

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var hasModel = ctx.Parents.Count > 1;
        var o = ((PairsOptions)config).Validate(hasModel);
        var prompts = PromptData.Read(o.DataPath);
        var (model, tokenizer) = Checkpoint.Load(ctx.ParentAt(0), ctx.Device);
        using var judgeModel = hasModel ? RewardModel.Load("judge_model", ctx.Parents[1], ctx.Device) : null;
        using (model)
        {
            var judge = (judgeModel is null ? [] : new (IReward, double)[] { (judgeModel, o.ModelWeight) })
                .Concat(o.Judge.Select(t => (Rewards.Named(t.Name), t.Weight))).ToArray();
            var encoded = prompts.Select(p => (IReadOnlyList<int>)(tokenizer.AddsBos ? [tokenizer.BosId, .. tokenizer.Encode(p.Prompt)] : tokenizer.Encode(p.Prompt))).ToArray();
            var sampling = new RolloutOptions
            {
                Completions = o.Candidates, MaxNewTokens = o.MaxNewTokens, Temperature = o.Temperature, TopK = o.TopK, TopP = o.TopP,
                Seed = unchecked((long)Rng.Derive(ctx.Seed, 0xF1DA)), StopTokens = [tokenizer.EosId, .. o.StopTokens],
            };
            var rollouts = Rollouts.Sample(model, encoded, sampling, tokenizer);
            var pairs = new List<string>();
            var candidates = new List<string>();
            var kept = new List<(double Chosen, double Rejected)>();
            var allScores = new List<double>();
            using (var log = MetricsLog.Create(Path.Combine(ctx.Directory, Training.Trainer.MetricsFile)))
            {
                foreach (var group in rollouts.GroupBy(r => r.Prompt))
                {
                    var i = group.Key;
                    var p = prompts[i];
                    var texts = group.OrderBy(r => r.Completion).Select(r => tokenizer.Decode(r.Tokens.Length > 0 && r.Tokens[^1] == tokenizer.EosId ? r.Tokens[..^1] : r.Tokens)).ToArray();
                    var scores = texts.Select(t => Rewards.Score(judge, p.Prompt, t, p.Answer, i)).ToArray();
                    var usable = texts.Select(t => !string.IsNullOrWhiteSpace(t)).ToArray();
                    allScores.AddRange(scores);
                    var pick = PairRule.Choose(scores, usable, o.MinGap);
                    candidates.Add(JsonSerializer.Serialize(new
                    {
                        prompt = p.Prompt, line = p.Line, candidates = texts, scores, chosen = pick?.Chosen, rejected = pick?.Rejected,
                    }));
                    if (pick is { } c)
                    {
                        kept.Add((scores[c.Chosen], scores[c.Rejected]));
                        pairs.Add(JsonSerializer.Serialize(new
                        {
                            prompt = p.Prompt, chosen = texts[c.Chosen], rejected = texts[c.Rejected],
                            chosen_score = scores[c.Chosen], rejected_score = scores[c.Rejected], scores, line = p.Line,
                        }));
                    }
                    var best = usable.Any(u => u) ? scores.Where((_, j) => usable[j]).Max() : double.NaN;
                    var worst = usable.Any(u => u) ? scores.Where((_, j) => usable[j]).Min() : double.NaN;
                    log.Write(i, "pairs", new Dictionary<string, double>
                    {
                        ["best"] = best, ["worst"] = worst, ["gap"] = best - worst, ["kept"] = pick is null ? 0 : 1,
                        ["mean_score"] = scores.Average(), ["usable_candidates"] = usable.Count(u => u),
                    }, 0);
                    for (var j = 0; j < scores.Length; j++)
                        log.Write((long)i * o.Candidates + j, "candidates", new Dictionary<string, double>
                        {
                            ["prompt"] = i, ["candidate"] = j, ["score"] = scores[j], ["usable"] = usable[j] ? 1 : 0,
                            ["chosen"] = pick?.Chosen == j ? 1 : 0, ["rejected"] = pick?.Rejected == j ? 1 : 0,
                        }, 0);
                }
            }
            if (pairs.Count == 0)
                throw new InvalidOperationException($"pairs: no prompt of {o.DataPath} gave a pair ({prompts.Count} prompts, {o.Candidates} candidates each, every one tied within min_gap {o.MinGap} or empty); sample more candidates, raise the temperature or lower min_gap");
            AtomicFile.WriteAllText(Path.Combine(ctx.Directory, AlignExecutor.ParentPairsFile), string.Concat(pairs.Select(l => l + "\n")));
            AtomicFile.WriteAllText(Path.Combine(ctx.Directory, CandidatesFile), string.Concat(candidates.Select(l => l + "\n")));
            var metrics = new Dictionary<string, double>
            {
                ["prompts"] = prompts.Count, ["pairs"] = pairs.Count, ["skipped"] = prompts.Count - pairs.Count,
                ["mean_chosen_score"] = kept.Average(k => k.Chosen), ["mean_rejected_score"] = kept.Average(k => k.Rejected),
                ["mean_gap"] = kept.Average(k => k.Chosen - k.Rejected), ["mean_candidate_score"] = allScores.Average(),
            };
            var report = new
            {
                data_path = o.DataPath, candidates = o.Candidates, judge = judge.Select(j => $"{j.Item1.Name}@{j.Item1.Version}*{j.Item2:R}").ToArray(),
                min_gap = o.MinGap, metrics,
            };
            AtomicFile.WriteAllText(Path.Combine(ctx.Directory, ReportFile), JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
            Checkpoint.Save(ctx.FinalCheckpoint, model, tokenizer);
            return metrics;
        }
    }
}
