namespace Research.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        Research.Backend.TorchRuntime.EnsureStarted();
        Console.WriteLine(Research.Backend.TorchRuntime.Report);
        return 0;
    }
}
