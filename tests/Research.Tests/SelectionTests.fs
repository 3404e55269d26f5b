module Research.Tests.SelectionTests
