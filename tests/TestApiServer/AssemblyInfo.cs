// The test API server (issue 4).
