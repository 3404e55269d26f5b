module Research.Tests.LawTests
