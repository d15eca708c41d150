using System.Text.RegularExpressions;
using k8s.Models;

namespace TsCgnat.Api;

/// <summary>The three values of <c>metav1.Condition.status</c>.</summary>
public static class ConditionStatus
{
    public const string True = "True";
    public const string False = "False";
    public const string Unknown = "Unknown";

    public static string Of(bool value) => value ? True : False;
}

/// <summary>Condition types of our kinds (design section 3).</summary>
public static class ConditionTypes
{
    /// <summary>Policy: every target node applied this generation. Node state: the host rules match the desired state.</summary>
    public const string Ready = "Ready";

    /// <summary>Policy: the spec passed the validator.</summary>
    public const string Accepted = "Accepted";

    /// <summary>Policy: some node failed, or its Tailscale set-up makes the policy ineffective.</summary>
    public const string Degraded = "Degraded";

    /// <summary>Node state: the detected Tailscale set-up lets the strategy work.</summary>
    public const string TailscaleCompatible = "TailscaleCompatible";
}

/// <summary>
/// Sets conditions by the <c>metav1.Condition</c> conventions, for the operator and the agent alike:
/// <c>lastTransitionTime</c> moves only when <c>status</c> flips, every condition carries the
/// generation it was computed from, and the caller learns whether anything changed, so it writes
/// status only then.
/// </summary>
public static partial class Conditions
{
    /// <summary>The API server's bound on <c>message</c>.</summary>
    public const int MaxMessageLength = 32768;

    /// <summary>The API server's pattern for <c>reason</c> (CamelCase, also ',' ':' '_').</summary>
    public const string ReasonPattern = "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$";

    /// <summary>
    /// Sets condition <paramref name="type"/> in <paramref name="conditions"/> and returns true when
    /// anything in it changed (and so the status needs writing).
    /// </summary>
    /// <exception cref="ArgumentException">
    /// <paramref name="status"/> is not True, False or Unknown, or <paramref name="reason"/> is not
    /// CamelCase: the API server would refuse the whole status write, so this is a bug to surface early.
    /// </exception>
    public static bool Set(
        IList<V1Condition> conditions, string type, string status, string reason, string message, long? observedGeneration, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(conditions);
        ArgumentException.ThrowIfNullOrEmpty(type);
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(time);
        if (status is not (ConditionStatus.True or ConditionStatus.False or ConditionStatus.Unknown))
        {
            throw new ArgumentException($"condition status \"{status}\" is not True, False or Unknown", nameof(status));
        }

        if (string.IsNullOrEmpty(reason) || reason.Length > 1024 || !Reason().IsMatch(reason))
        {
            throw new ArgumentException($"condition reason \"{reason}\" is not CamelCase (pattern {ReasonPattern})", nameof(reason));
        }

        // The API server refuses a longer message, and with it the whole status; a firewall tool's error
        // output can be that long, so keep its head, which is the part that says what went wrong.
        if (message.Length > MaxMessageLength)
        {
            message = string.Concat(message.AsSpan(0, MaxMessageLength - 1), "…");
        }

        var existing = Find(conditions, type);
        if (existing is null)
        {
            conditions.Add(new V1Condition
            {
                Type = type,
                Status = status,
                Reason = reason,
                Message = message,
                ObservedGeneration = observedGeneration,
                LastTransitionTime = Now(time),
            });
            return true;
        }

        var changed = false;
        if (existing.Status != status)
        {
            existing.Status = status;
            existing.LastTransitionTime = Now(time);
            changed = true;
        }

        if (existing.Reason != reason)
        {
            existing.Reason = reason;
            changed = true;
        }

        if (existing.Message != message)
        {
            existing.Message = message;
            changed = true;
        }

        if (existing.ObservedGeneration != observedGeneration)
        {
            existing.ObservedGeneration = observedGeneration;
            changed = true;
        }

        return changed;
    }

    /// <summary>The condition of <paramref name="type"/>, or null.</summary>
    public static V1Condition? Find(IEnumerable<V1Condition>? conditions, string type) =>
        conditions?.FirstOrDefault(c => c.Type == type);

    /// <summary>True when the condition exists and its status is True.</summary>
    public static bool IsTrue(IEnumerable<V1Condition>? conditions, string type) =>
        Find(conditions, type)?.Status == ConditionStatus.True;

    /// <summary>Removes the condition of <paramref name="type"/>; returns whether there was one.</summary>
    public static bool Remove(IList<V1Condition> conditions, string type)
    {
        ArgumentNullException.ThrowIfNull(conditions);
        return Find(conditions, type) is { } existing && conditions.Remove(existing);
    }

    /// <summary>
    /// Now, in UTC, to the second: <c>metav1.Time</c> carries whole seconds, so a finer value would
    /// differ from what the API server hands back and make an unchanged status look changed.
    /// </summary>
    private static DateTime Now(TimeProvider time)
    {
        var now = time.GetUtcNow().UtcDateTime;
        return new DateTime(now.Ticks - (now.Ticks % TimeSpan.TicksPerSecond), DateTimeKind.Utc);
    }

    // \z, not $: in .NET '$' also matches before a final "\n", which the API server's RE2 refuses.
    [GeneratedRegex(@"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?\z", RegexOptions.CultureInvariant)]
    private static partial Regex Reason();
}
