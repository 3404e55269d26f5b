namespace Research.Training;

/// <summary>A one-line progress bar on stderr (redrawn in place on a terminal, a line per update otherwise).</summary>
public sealed class Progress
{
    readonly string _label;
    readonly long _total;
    readonly TextWriter _out;
    readonly bool _interactive;
    readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
    long _lastPrinted = -1;

    public Progress(string label, long total, TextWriter? output = null)
    {
        _label = label;
        _total = Math.Max(1, total);
        _out = output ?? Console.Error;
        _interactive = output is null && !Console.IsErrorRedirected;
    }

    public void Update(long done, string detail)
    {
        const int width = 24;
        var filled = (int)(width * Math.Min(done, _total) / _total);
        var bar = new string('#', filled) + new string('.', width - filled);
        var line = $"{_label} [{bar}] {done}/{_total} {detail}";
        if (_interactive) _out.Write("\r" + line.PadRight(Console.WindowWidth > 0 ? Math.Min(Console.WindowWidth - 1, 120) : 100));
        else if (done == _total || _lastPrinted < 0 || (done - _lastPrinted) * 10 >= _total)
        {
            _out.WriteLine(line);
            _lastPrinted = done;
        }
        if (_interactive && done == _total) _out.WriteLine();
    }

    public TimeSpan Elapsed => _clock.Elapsed;
}
