// The agent manages Linux netfilter; it runs nowhere else.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
