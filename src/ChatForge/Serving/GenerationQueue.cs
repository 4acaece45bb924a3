using System.Threading.Channels;
using ChatForge.Generation;
using ChatForge.Modeling;
using ChatForge.Tokenization;

namespace ChatForge.Serving;

/// <summary>The queue of a model already holds as many requests as it may: the caller should retry later (HTTP 503).</summary>
public sealed class QueueFullException(string message) : ChatForgeException(message);

/// <summary>
/// One model's generation requests, decoded on one thread with continuous batching (<see cref="TextGenerator.ContinuousBatch"/>):
/// between two decoding steps the worker admits the requests waiting (up to <see cref="MaxBatch"/> rows running), and a
/// request leaves as soon as it ends, so concurrent callers share every forward pass and a short answer never waits for
/// a long one. The model is only ever used from that thread. The queue is bounded: beyond <see cref="Capacity"/> requests
/// waiting or running, <see cref="Enqueue"/> throws <see cref="QueueFullException"/>.
/// </summary>
public sealed class GenerationQueue : IDisposable
{
    readonly TextGenerator _gen;
    readonly Channel<Item> _channel = Channel.CreateUnbounded<Item>(new UnboundedChannelOptions { SingleReader = true });
    readonly Thread _worker;
    int _pending;

    /// <summary>A request and its task; <see cref="State"/> 0 waiting, 1 admitted to the batch, 2 cancelled while waiting.</summary>
    sealed class Item(RowRequest request)
    {
        public readonly RowRequest Request = request;
        public readonly TaskCompletionSource<Completion> Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int State;
        public CancellationTokenRegistration Registration;
    }

    public GenerationQueue(CausalLM model, ITokenizer tok, int maxBatch = 8, int capacity = 64)
    {
        if (maxBatch < 1) throw new ChatForgeException($"the batch size must be ≥ 1, got {maxBatch}");
        if (capacity < maxBatch) throw new ChatForgeException($"the queue capacity ({capacity}) must be at least the batch size ({maxBatch})");
        _gen = new TextGenerator(model, tok);
        MaxBatch = maxBatch;
        Capacity = capacity;
        _worker = new Thread(Run) { IsBackground = true, Name = "chatforge-generation" };
        _worker.Start();
    }

    public int MaxBatch { get; }
    public int Capacity { get; }
    /// <summary>Requests waiting or being decoded.</summary>
    public int Pending => Volatile.Read(ref _pending);
    /// <summary>Decoding steps so far, and the rows they decoded (their ratio is the mean batch size).</summary>
    public long Steps { get; private set; }
    public long RowSteps { get; private set; }
    /// <summary>Requests that ended early because their caller cancelled them (before or during decoding).</summary>
    public long CancelledRequests => Interlocked.Read(ref _cancelled);
    long _cancelled;

    /// <summary>Queues a request; the task ends with its completion (finish reason "cancelled" if its token fired first).</summary>
    public Task<Completion> Enqueue(RowRequest request)
    {
        request.Options.Validate();
        if (Interlocked.Increment(ref _pending) > Capacity)
        {
            Interlocked.Decrement(ref _pending);
            throw new QueueFullException($"the model's queue is full ({Capacity} requests waiting or running); retry later");
        }
        var item = new Item(request);
        // Cancelled while still waiting: done at once, its place in the queue freed (the worker skips it).
        item.Registration = request.Cancel.Register(() =>
        {
            if (Interlocked.CompareExchange(ref item.State, 2, 0) != 0) return;
            Interlocked.Increment(ref _cancelled);
            Interlocked.Decrement(ref _pending);
            item.Done.TrySetResult(new Completion(Array.Empty<int>(), "", "cancelled", request.Prompt.Length, false));
        });
        if (!_channel.Writer.TryWrite(item))
        {
            item.Registration.Dispose();
            Interlocked.Decrement(ref _pending);
            throw new ObjectDisposedException(nameof(GenerationQueue));
        }
        return item.Done.Task;
    }

    /// <summary>
    /// The worker: admits waiting requests into the running batch between steps (up to <see cref="MaxBatch"/> rows), steps
    /// it, and completes each request as its row ends; it sleeps while nothing runs or waits.
    /// </summary>
    void Run()
    {
        var batch = new TextGenerator.ContinuousBatch(_gen);
        try
        {
            while (true)
            {
                if (batch.Count == 0 && !_channel.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult()) return;
                while (batch.Count < MaxBatch && _channel.Reader.TryRead(out var item))
                {
                    if (Interlocked.CompareExchange(ref item.State, 1, 0) != 0) continue;   // cancelled while waiting
                    item.Registration.Dispose();
                    _running.Add(item);
                    try { batch.Add(item.Request, c => Complete(item, c)); }
                    catch (Exception e) { Fail(item, e); }
                }
                if (batch.Count == 0) continue;
                int rows = batch.Count;
                try { batch.Step(); }
                catch (Exception e)
                {
                    // A failed step fails every running request; the batch starts afresh.
                    foreach (var item in _running.ToList()) Fail(item, e);
                    batch.Dispose();
                    batch = new TextGenerator.ContinuousBatch(_gen);
                    continue;
                }
                Steps++;
                RowSteps += rows;
            }
        }
        finally
        {
            batch.Dispose();
        }
    }

    readonly HashSet<Item> _running = new();

    void Fail(Item item, Exception e)
    {
        if (_running.Remove(item)) Interlocked.Decrement(ref _pending);
        item.Done.TrySetException(e);
    }

    void Complete(Item item, Completion c)
    {
        if (c.FinishReason == "cancelled") Interlocked.Increment(ref _cancelled);
        if (_running.Remove(item)) Interlocked.Decrement(ref _pending);
        item.Done.TrySetResult(c);
    }

    public void Dispose()
    {
        _channel.Writer.TryComplete();
        _worker.Join();
    }
}
