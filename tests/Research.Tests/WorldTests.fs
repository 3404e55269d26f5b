module Research.Tests.WorldTests
