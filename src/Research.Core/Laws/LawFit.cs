namespace Research.Laws;

/// <summary>A free parameter of a law: its name and the range the random restarts draw its start from
/// (log-uniformly when <paramref name="Positive"/>, which also keeps it > 0 during the fit by fitting its log).</summary>
public sealed record LawParameter(string Name, double Low, double High, bool Positive = false);

/// <summary>One measured point: the inputs (in the law's input order) and the measured value (a loss, > 0).</summary>
public sealed record LawPoint(double[] X, double Y);

/// <summary>
/// A parametric law y = f(θ, x) with named inputs and parameters. Any function can be a law; <see cref="DCpt"/> is the default.
/// </summary>
public sealed class Law(string name, string formula, string[] inputs, LawParameter[] parameters, Func<double[], double[], double> evaluate)
{
    public string Name => name;
    /// <summary>The formula in words, for reports.</summary>
    public string Formula => formula;
    public string[] Inputs => inputs;
    public LawParameter[] Parameters => parameters;

    /// <summary>f(θ, x): θ in <see cref="Parameters"/> order, x in <see cref="Inputs"/> order.</summary>
    public double Evaluate(double[] theta, double[] x) => evaluate(theta, x);

    /// <summary>
    /// The D-CPT Law ("D-CPT Law: Domain-specific Continual Pre-Training Scaling Law for Large Language Models", Que et al. 2024),
    /// L(N, D, r) = E + A/N^α + B·r^η/D^β + C/(r + ε)^γ, at a fixed model size (A/N^α folds into E):
    /// L(r, D) = E + B·r^η / D^β + C / (r + ε)^γ, r = the share of the data whose loss L is, D = training tokens.
    /// ε is fixed (not fitted); E, B, C, β, γ are kept > 0, η free.
    /// </summary>
    public static Law DCpt(double epsilon = 0.01) => new(
        "d-cpt", $"L(r, D) = E + B·r^η / D^β + C / (r + {epsilon:R})^γ", ["r", "D"],
        [
            new("E", 0.1, 3, Positive: true), new("B", 0.1, 100, Positive: true), new("eta", -1, 1),
            new("beta", 0.05, 1, Positive: true), new("C", 0.01, 1, Positive: true), new("gamma", 0.05, 1, Positive: true),
        ],
        (t, x) => t[0] + t[1] * Math.Pow(x[0], t[2]) / Math.Pow(x[1], t[3]) + t[4] / Math.Pow(x[0] + epsilon, t[5]));

    /// <summary>A one-input power law with an offset: y = E + A / x^α (Chinchilla-style, one axis).</summary>
    public static Law Power(string input = "x") => new(
        "power", $"y = E + A / {input}^α", [input],
        [new("E", 0.1, 3, Positive: true), new("A", 0.1, 100, Positive: true), new("alpha", 0.05, 1.5, Positive: true)],
        (t, x) => t[0] + t[1] / Math.Pow(x[0], t[2]));
}

/// <summary>Fit settings. <paramref name="HuberDelta"/> is in log space (Chinchilla used 1e-3); restarts are seeded.</summary>
public sealed record LawFitOptions(double HuberDelta = 1e-3, int Restarts = 24, int Seed = 0, int MaxIterations = 300);

/// <summary>
/// A fitted law. <see cref="RmseLog"/>: root mean square of log f(θ̂, x_i) − log y_i over the fitted points;
/// <see cref="SigmaLog"/>: the same with n − p in the denominator (the noise estimate);
/// <see cref="PredictionErrorAt"/>: the error the fit reports for a new point, a ≈ 95% band in log space if the log-noise is Gaussian.
/// </summary>
public sealed record LawFitResult(Law Law, double[] Theta, IReadOnlyDictionary<string, double> Parameters, double Objective, double RmseLog, double SigmaLog, int Points)
{
    /// <summary>2·SigmaLog: the log-space error for a new point when the parameters' own uncertainty is ignored.</summary>
    public double PredictionError => 2 * SigmaLog;

    /// <summary>(JᵀJ)⁻¹ of the log residuals at the fit, in the fitted coordinates (logs of positive parameters); null if singular.</summary>
    internal double[,]? InverseNormal { get; init; }

    /// <summary>
    /// The error the fit reports for a new point x₀: 2·σ̂·√(1 + j₀ᵀ(JᵀJ)⁻¹j₀), j₀ = ∂ log f(x₀)/∂θ — the usual prediction band of
    /// least squares, which widens away from the fitted points. Falls back to <see cref="PredictionError"/> when JᵀJ is singular.
    /// </summary>
    public double PredictionErrorAt(params double[] x)
    {
        if (InverseNormal is not { } inv) return PredictionError;
        var j = LawFit.LogGradient(Law, Theta, x);
        if (j is null) return PredictionError;
        double q = 0;
        for (var a = 0; a < j.Length; a++)
            for (var b = 0; b < j.Length; b++) q += j[a] * inv[a, b] * j[b];
        return 2 * SigmaLog * Math.Sqrt(1 + Math.Max(0, q));
    }

    public double Predict(params double[] x) => Law.Evaluate(Theta, x);

    /// <summary>y at evenly spaced values of input <paramref name="input"/> in [from, to], the other inputs as in <paramref name="at"/>: a curve to draw.</summary>
    public IReadOnlyList<(double X, double Y)> Curve(int input, double[] at, double from, double to, int samples = 50)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(samples, 2);
        return Enumerable.Range(0, samples).Select(i =>
        {
            var x = at.ToArray();
            x[input] = from + (to - from) * i / (samples - 1);
            return (x[input], Predict(x));
        }).ToArray();
    }
}

/// <summary>One leave-one-out prediction: the point held out, the law fitted on the others, what it predicted and the error it reported.</summary>
public sealed record LeaveOneOutResult(LawPoint HeldOut, double Predicted, double LogError, double ReportedError)
{
    /// <summary>|log predicted − log measured| ≤ the reported prediction error.</summary>
    public bool Within => LogError <= ReportedError;
}

/// <summary>
/// Robust least squares in log space: minimise Σ_i Huber_δ(log f(θ, x_i) − log y_i) by Levenberg–Marquardt on
/// iteratively reweighted residuals (weight 1 inside δ, δ/|r| outside), from many seeded random starts; the best wins.
/// </summary>
public static class LawFit
{
    public static double Huber(double r, double delta) => Math.Abs(r) <= delta ? 0.5 * r * r : delta * (Math.Abs(r) - 0.5 * delta);

    public static LawFitResult Fit(Law law, IReadOnlyList<LawPoint> points, LawFitOptions? options = null)
    {
        var o = options ?? new LawFitOptions();
        if (points.Count == 0) throw new ArgumentException($"law '{law.Name}': no points to fit");
        for (var i = 0; i < points.Count; i++)
        {
            if (points[i].X.Length != law.Inputs.Length)
                throw new ArgumentException($"law '{law.Name}': point {i} has {points[i].X.Length} inputs, the law takes {law.Inputs.Length} ({string.Join(", ", law.Inputs)})");
            if (!(points[i].Y > 0) || !double.IsFinite(points[i].Y))
                throw new ArgumentException($"law '{law.Name}': point {i} has value {points[i].Y}; fitting in log space needs values > 0");
        }
        var ps = law.Parameters;
        var rng = new Research.Data.Rng(Research.Data.Rng.Derive(o.Seed, 0x1a3));
        double[]? best = null;
        var bestObjective = double.PositiveInfinity;
        for (var restart = 0; restart < Math.Max(1, o.Restarts); restart++)
        {
            var u = ps.Select(p => p.Positive
                ? Math.Log(p.Low) + (Math.Log(p.High) - Math.Log(p.Low)) * rng.NextDouble()
                : p.Low + (p.High - p.Low) * rng.NextDouble()).ToArray();
            var (uFit, objective) = LevenbergMarquardt(law, points, u, o);
            if (objective < bestObjective) { bestObjective = objective; best = uFit; }
        }
        if (best is null)
            throw new InvalidOperationException($"law '{law.Name}': no start gave finite positive predictions at every point; check the form and the parameter ranges");
        var theta = ToTheta(ps, best);
        var r = Residuals(law, points, theta)!;
        var ss = r.Sum(x => x * x);
        var rmse = Math.Sqrt(ss / r.Length);
        var sigma = r.Length > ps.Length ? Math.Sqrt(ss / (r.Length - ps.Length)) : rmse;
        return new LawFitResult(law, theta, ps.Select((p, i) => (p.Name, theta[i])).ToDictionary(), bestObjective, rmse, sigma, points.Count)
        {
            InverseNormal = InverseNormal(law, points, theta),
        };
    }

    /// <summary>∂ log f(θ, x) / ∂u in the fitted coordinates (u = log θ for positive parameters), by central differences.</summary>
    internal static double[]? LogGradient(Law law, double[] theta, double[] x)
    {
        var ps = law.Parameters;
        var u = theta.Select((t, i) => ps[i].Positive ? Math.Log(t) : t).ToArray();
        var g = new double[u.Length];
        for (var k = 0; k < u.Length; k++)
        {
            var h = 1e-6 * Math.Max(1, Math.Abs(u[k]));
            var up = u.ToArray(); up[k] += h;
            var dn = u.ToArray(); dn[k] -= h;
            var fp = law.Evaluate(ToTheta(ps, up), x);
            var fd = law.Evaluate(ToTheta(ps, dn), x);
            if (!(fp > 0) || !(fd > 0)) return null;
            g[k] = (Math.Log(fp) - Math.Log(fd)) / (2 * h);
        }
        return g;
    }

    static double[,]? InverseNormal(Law law, IReadOnlyList<LawPoint> points, double[] theta)
    {
        var p = theta.Length;
        var jtj = new double[p, p];
        foreach (var pt in points)
        {
            var g = LogGradient(law, theta, pt.X);
            if (g is null) return null;
            for (var a = 0; a < p; a++)
                for (var b = 0; b < p; b++) jtj[a, b] += g[a] * g[b];
        }
        var inv = new double[p, p];
        for (var c = 0; c < p; c++)
        {
            var e = new double[p];
            e[c] = 1;
            var col = Solve(jtj, e);
            if (col is null) return null;
            for (var r = 0; r < p; r++) inv[r, c] = col[r];
        }
        return inv;
    }

    /// <summary>For each point: fit on all the others, predict it, compare with the error that fit reports.</summary>
    public static IReadOnlyList<LeaveOneOutResult> LeaveOneOut(Law law, IReadOnlyList<LawPoint> points, LawFitOptions? options = null) =>
        points.Select((held, i) =>
        {
            var fit = Fit(law, points.Where((_, j) => j != i).ToArray(), options);
            var predicted = fit.Predict(held.X);
            return new LeaveOneOutResult(held, predicted, Math.Abs(Math.Log(predicted) - Math.Log(held.Y)), fit.PredictionErrorAt(held.X));
        }).ToArray();

    static double[] ToTheta(LawParameter[] ps, double[] u) => u.Select((v, i) => ps[i].Positive ? Math.Exp(v) : v).ToArray();

    /// <summary>log f − log y at every point, or null if some prediction is not finite and > 0.</summary>
    static double[]? Residuals(Law law, IReadOnlyList<LawPoint> points, double[] theta)
    {
        var r = new double[points.Count];
        for (var i = 0; i < r.Length; i++)
        {
            var f = law.Evaluate(theta, points[i].X);
            if (!(f > 0) || !double.IsFinite(f)) return null;
            r[i] = Math.Log(f) - Math.Log(points[i].Y);
        }
        return r;
    }

    static double Objective(double[]? r, double delta) => r is null ? double.PositiveInfinity : r.Sum(x => Huber(x, delta));

    static (double[] U, double Objective) LevenbergMarquardt(Law law, IReadOnlyList<LawPoint> points, double[] u, LawFitOptions o)
    {
        var ps = law.Parameters;
        var p = u.Length;
        var r = Residuals(law, points, ToTheta(ps, u));
        var f = Objective(r, o.HuberDelta);
        if (r is null) return (u, f);
        var mu = 1e-3;
        for (var it = 0; it < o.MaxIterations; it++)
        {
            // Jacobian of the residuals by central differences in the fitted coordinates.
            var jac = new double[r.Length, p];
            var ok = true;
            for (var k = 0; k < p && ok; k++)
            {
                var h = 1e-6 * Math.Max(1, Math.Abs(u[k]));
                var up = u.ToArray(); up[k] += h;
                var dn = u.ToArray(); dn[k] -= h;
                var rp = Residuals(law, points, ToTheta(ps, up));
                var rd = Residuals(law, points, ToTheta(ps, dn));
                if (rp is null || rd is null) { ok = false; break; }
                for (var i = 0; i < r.Length; i++) jac[i, k] = (rp[i] - rd[i]) / (2 * h);
            }
            if (!ok) break;
            var w = r.Select(x => Math.Abs(x) <= o.HuberDelta ? 1 : o.HuberDelta / Math.Abs(x)).ToArray();
            var jtj = new double[p, p];
            var jtr = new double[p];
            for (var i = 0; i < r.Length; i++)
                for (var a = 0; a < p; a++)
                {
                    jtr[a] += w[i] * jac[i, a] * r[i];
                    for (var b = 0; b < p; b++) jtj[a, b] += w[i] * jac[i, a] * jac[i, b];
                }
            var improved = false;
            for (var tries = 0; tries < 12 && !improved; tries++)
            {
                var m = (double[,])jtj.Clone();
                for (var a = 0; a < p; a++) m[a, a] += mu * (jtj[a, a] + 1e-12);
                var step = Solve(m, jtr.Select(x => -x).ToArray());
                if (step is null) { mu *= 10; continue; }
                var un = u.Zip(step, (a, b) => a + b).ToArray();
                var rn = Residuals(law, points, ToTheta(ps, un));
                var fn = Objective(rn, o.HuberDelta);
                if (fn < f)
                {
                    var gain = f - fn;
                    (u, r, f) = (un, rn!, fn);
                    mu = Math.Max(mu / 3, 1e-12);
                    improved = true;
                    if (gain < 1e-15 * Math.Max(1, f)) return (u, f);
                }
                else mu *= 4;
            }
            if (!improved) break;
        }
        return (u, f);
    }

    /// <summary>Gaussian elimination with partial pivoting; null when singular.</summary>
    static double[]? Solve(double[,] a, double[] b)
    {
        var n = b.Length;
        a = (double[,])a.Clone();
        b = b.ToArray();
        for (var c = 0; c < n; c++)
        {
            var piv = c;
            for (var i = c + 1; i < n; i++) if (Math.Abs(a[i, c]) > Math.Abs(a[piv, c])) piv = i;
            if (Math.Abs(a[piv, c]) < 1e-300 || !double.IsFinite(a[piv, c])) return null;
            if (piv != c)
            {
                for (var j = 0; j < n; j++) (a[c, j], a[piv, j]) = (a[piv, j], a[c, j]);
                (b[c], b[piv]) = (b[piv], b[c]);
            }
            for (var i = c + 1; i < n; i++)
            {
                var factor = a[i, c] / a[c, c];
                for (var j = c; j < n; j++) a[i, j] -= factor * a[c, j];
                b[i] -= factor * b[c];
            }
        }
        var x = new double[n];
        for (var i = n - 1; i >= 0; i--)
        {
            var s = b[i];
            for (var j = i + 1; j < n; j++) s -= a[i, j] * x[j];
            x[i] = s / a[i, i];
        }
        return x.All(double.IsFinite) ? x : null;
    }
}
