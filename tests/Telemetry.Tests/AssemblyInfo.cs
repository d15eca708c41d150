// OpenTelemetry's providers listen to meters by name, and every TsCgnatMetrics has the meter "tscgnat": two
// tests running at once would each see the other's measurements. One at a time keeps each test's expected
// values its own.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
