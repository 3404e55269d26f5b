module Research.Tests.FigureTests
