module Research.Tests.LoraTests
