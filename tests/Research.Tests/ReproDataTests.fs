module Research.Tests.ReproDataTests
