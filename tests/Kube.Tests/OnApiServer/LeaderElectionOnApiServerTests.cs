using System.Text.Json.Nodes;
using k8s.Models;

namespace TsCgnat.Kube.Tests.OnApiServer;

public sealed class LeaderElectionOnApiServerTests : ApiServerTest
{
    private static LeaderElectionOptions Options(string identity) => new("kube-system", "ts-cgnat-operator", identity)
    {
        LeaseDuration = TimeSpan.FromSeconds(2),
        RenewDeadline = TimeSpan.FromSeconds(1.5),
        RetryPeriod = TimeSpan.FromMilliseconds(200),
    };

    private string? Holder() => (string?)Server.Get("leases", "ts-cgnat-operator", "kube-system")?["spec"]?["holderIdentity"];

    /// <summary>Work that records who leads and checks that nobody else does at the same time.</summary>
    private sealed class Terms
    {
        private int leaders;

        public int MostAtOnce { get; private set; }

        public List<string> Started { get; } = [];

        public List<string> Stopped { get; } = [];

        public Func<CancellationToken, Task> For(string identity) => async ct =>
        {
            lock (this)
            {
                Started.Add(identity);
                MostAtOnce = Math.Max(MostAtOnce, ++leaders);
            }

            try
            {
                await Task.Delay(Timeout.Infinite, ct);
            }
            finally
            {
                lock (this)
                {
                    leaders--;
                    Stopped.Add(identity);
                }
            }
        };

        public bool HasStarted(string identity)
        {
            lock (this)
            {
                return Started.Contains(identity);
            }
        }
    }

    [Fact]
    public async Task One_of_two_leads_and_the_other_takes_over_when_it_stops()
    {
        var terms = new Terms();
        var a = new LeaderElection(Client(), Options("op-a"));
        var b = new LeaderElection(Client(), Options("op-b"));
        using var stopA = CancellationTokenSource.CreateLinkedTokenSource(Stop.Token);
        var runA = a.RunAsync(terms.For("op-a"), stopA.Token);
        Running.Add(runA);
        await Eventually.TrueAsync(() => terms.HasStarted("op-a"), "op-a leads");
        Running.Add(b.RunAsync(terms.For("op-b"), Stop.Token));
        await Eventually.TrueAsync(() => b.Leader == "op-a", "op-b sees op-a leading");
        Assert.True(a.IsLeader);
        Assert.False(b.IsLeader);

        await stopA.CancelAsync();
        await runA.WaitAsync(TimeSpan.FromSeconds(20));

        await Eventually.TrueAsync(() => terms.HasStarted("op-b"), "op-b takes over");
        Assert.Equal(["op-a", "op-b"], terms.Started);
        Assert.Equal(["op-a"], terms.Stopped);
        Assert.Equal(1, terms.MostAtOnce);
        Assert.Equal("op-b", Holder());
        Assert.True(b.IsLeader);
    }

    [Fact]
    public async Task The_work_stops_when_the_lease_is_lost()
    {
        var terms = new Terms();
        var a = new LeaderElection(Client(), Options("op-a"));
        Running.Add(a.RunAsync(terms.For("op-a"), Stop.Token));
        await Eventually.TrueAsync(() => terms.HasStarted("op-a"), "op-a leads");

        // Someone else holds the Lease now, freshly renewed and for long: op-a cannot renew.
        var lease = Server.Get("leases", "ts-cgnat-operator", "kube-system")!;
        lease["spec"]!["holderIdentity"] = "intruder";
        lease["spec"]!["leaseDurationSeconds"] = 3600;
        lease["spec"]!["renewTime"] = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", System.Globalization.CultureInfo.InvariantCulture);
        Server.Put("leases", lease);

        await Eventually.TrueAsync(() => { lock (terms) { return terms.Stopped.Contains("op-a"); } }, "op-a's work is stopped");
        Assert.False(a.IsLeader);
        Assert.Equal("intruder", Holder());
    }

    [Fact]
    public async Task A_failure_of_the_work_gives_up_the_lease_and_is_thrown()
    {
        var a = new LeaderElection(Client(), Options("op-a"));

        var error = await Assert.ThrowsAsync<InvalidOperationException>(
            () => a.RunAsync(_ => throw new InvalidOperationException("controller crashed"), Stop.Token).WaitAsync(TimeSpan.FromSeconds(20)));

        Assert.Equal("controller crashed", error.Message);
        Assert.Equal("", Holder());
    }
}
