module Research.Tests.SuiteTests
