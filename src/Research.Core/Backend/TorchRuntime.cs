using System.Runtime.InteropServices;
using System.Security.Cryptography;
using TorchSharp;

namespace Research.Backend;

/// <summary>
/// Starts libtorch once per process. TorchSharp 0.107's libLibTorchSharp.so asks for
/// GLIBCXX_3.4.32 although nothing binds to it; where the system libstdc++ lacks it, a copy
/// with that requirement marked weak is written to a cache folder and loaded, after the
/// libtorch.so of the very folder TorchSharp uses (loading libtorch twice crashes).
/// Works the same from the CLI, `dotnet fsi` scripts that reference the built assemblies,
/// and notebooks. Never touches the NuGet cache.
/// </summary>
public static class TorchRuntime
{
    const string MissingVersion = "GLIBCXX_3.4.32";
    static readonly object Gate = new();
    static bool _started;

    /// <summary>What start-up did, for diagnostics (`research doctor`).</summary>
    public static string Report { get; private set; } = "not started";

    public static void EnsureStarted()
    {
        if (_started) return;
        lock (Gate)
        {
            if (_started) return;
            if (OperatingSystem.IsLinux()) PreloadPatchedNative();
            NativeAllocator.Retain();
            torch.InitializeDeviceType(DeviceType.CPU);
            _started = true;
        }
    }

    static void PreloadPatchedNative()
    {
        if (FindNative() is not { } found) { Report = "native folder not found; TorchSharp resolves it itself"; return; }
        var (nativeDir, original) = found;
        if (SystemLibstdcxxHas(MissingVersion)) { Report = $"system libstdc++ has {MissingVersion}; using {original} as shipped"; return; }
        var bytes = File.ReadAllBytes(original);
        var patched = ElfVersionPatch.MarkVersionWeak(bytes, MissingVersion);
        if (patched is null) { Report = $"{original} needs no patch"; return; }
        var hash = Convert.ToHexString(SHA256.HashData(bytes))[..16].ToLowerInvariant();
        var cacheDir = Path.Combine(CacheRoot(), "native", hash);
        var target = Path.Combine(cacheDir, "libLibTorchSharp.so");
        if (!File.Exists(target))
        {
            Directory.CreateDirectory(cacheDir);
            var tmp = target + "." + Environment.ProcessId + ".tmp";
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write))
            {
                fs.Write(patched);
                fs.Flush(true);
            }
            File.Move(tmp, target, overwrite: true);
        }
        NativeLibrary.Load(Path.Combine(nativeDir, "libtorch.so"));
        NativeLibrary.Load(target);
        Report = $"loaded {nativeDir}/libtorch.so and patched {target} ({MissingVersion} marked weak)";
    }

    static string CacheRoot()
    {
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var root = string.IsNullOrEmpty(xdg)
            ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache")
            : xdg;
        return Path.Combine(root, "research");
    }

    /// <summary>The libtorch.so folder and the libLibTorchSharp.so file that TorchSharp would load.</summary>
    static (string TorchDir, string Sharp)? FindNative()
    {
        var candidates = new List<string>();
        var tsDir = Path.GetDirectoryName(typeof(torch).Assembly.Location);
        foreach (var root in new[] { tsDir, AppContext.BaseDirectory })
        {
            if (string.IsNullOrEmpty(root)) continue;
            candidates.Add(root);
            candidates.Add(Path.Combine(root, "runtimes", "linux-x64", "native"));
            // TorchSharp.dll referenced straight from the NuGet cache (lib/net8.0): its package root.
            candidates.Add(Path.GetFullPath(Path.Combine(root, "..", "..", "runtimes", "linux-x64", "native")));
        }
        var packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p
            ? p : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        foreach (var pkg in new[] { "libtorch-cpu-linux-x64", "torchsharp-cpu", "libtorch-cpu" })
        {
            var dir = Path.Combine(packages, pkg);
            if (Directory.Exists(dir))
                candidates.AddRange(Directory.GetDirectories(dir).OrderDescending().Select(v => Path.Combine(v, "runtimes", "linux-x64", "native")));
        }
        var torchDir = candidates.FirstOrDefault(d => File.Exists(Path.Combine(d, "libtorch.so")));
        var sharpDir = candidates.FirstOrDefault(d => File.Exists(Path.Combine(d, "libLibTorchSharp.so")));
        if (torchDir is null || sharpDir is null) return null;
        return (torchDir, Path.Combine(sharpDir, "libLibTorchSharp.so"));
    }

    static bool SystemLibstdcxxHas(string version)
    {
        foreach (var path in new[] { "/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6" })
        {
            if (!File.Exists(path)) continue;
            var bytes = File.ReadAllBytes(path);
            var needle = System.Text.Encoding.ASCII.GetBytes(version + "\0");
            return bytes.AsSpan().IndexOf(needle) >= 0;
        }
        return false;
    }
}
