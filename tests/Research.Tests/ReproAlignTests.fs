module Research.Tests.ReproAlignTests
