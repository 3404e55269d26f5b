module Research.Tests.ReproMergeTests
