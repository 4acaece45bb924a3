using System.Threading.Channels;
using ChatForge.Generation;
using ChatForge.Modeling;
using ChatForge.Tokenization;

namespace ChatForge.Serving;

/// <summary>The queue of a model already holds as many requests as it may: the caller should retry later (HTTP 503).</summary>
public sealed class QueueFullException(string message) : ChatForgeException(message);

/// <summary>
/// One model's generation requests, decoded on one thread in batches: when a batch starts it takes every request
/// waiting (up to <see cref="MaxBatch"/>) and decodes them together (<see cref="TextGenerator.GenerateRows"/>, each with
/// its own options); requests that arrive meanwhile wait for the next batch. So concurrent callers share the forward
/// passes instead of queueing one after another, and the model is only ever used from one thread. The queue is bounded:
/// beyond <see cref="Capacity"/> requests waiting or running, <see cref="Enqueue"/> throws <see cref="QueueFullException"/>.
/// </summary>
public sealed class GenerationQueue : IDisposable
{
    readonly TextGenerator _gen;
    readonly Channel<Item> _channel = Channel.CreateUnbounded<Item>(new UnboundedChannelOptions { SingleReader = true });
    readonly Thread _worker;
    int _pending;

    sealed record Item(RowRequest Request, TaskCompletionSource<Completion> Done);

    public GenerationQueue(Gpt model, ITokenizer tok, int maxBatch = 8, int capacity = 64)
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
    /// <summary>Batches decoded so far, and the requests in them (their ratio is the mean batch size).</summary>
    public long Batches { get; private set; }
    public long BatchedRequests { get; private set; }
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
        var item = new Item(request, new TaskCompletionSource<Completion>(TaskCreationOptions.RunContinuationsAsynchronously));
        if (!_channel.Writer.TryWrite(item))
        {
            Interlocked.Decrement(ref _pending);
            throw new ObjectDisposedException(nameof(GenerationQueue));
        }
        return item.Done.Task;
    }

    void Run()
    {
        while (_channel.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            var batch = new List<Item>();
            while (batch.Count < MaxBatch && _channel.Reader.TryRead(out var item))
            {
                if (item.Request.Cancel.IsCancellationRequested)
                {
                    item.Done.TrySetResult(new Completion(Array.Empty<int>(), "", "cancelled", item.Request.Prompt.Length, false));
                    Interlocked.Increment(ref _cancelled);
                    Interlocked.Decrement(ref _pending);
                    continue;
                }
                batch.Add(item);
            }
            if (batch.Count == 0) continue;
            try
            {
                var outs = _gen.GenerateRows(batch.Select(b => b.Request).ToList());
                Batches++;
                BatchedRequests += batch.Count;
                Interlocked.Add(ref _cancelled, outs.Count(c => c.FinishReason == "cancelled"));
                for (int i = 0; i < batch.Count; i++) batch[i].Done.TrySetResult(outs[i]);
            }
            catch (Exception e)
            {
                foreach (var b in batch) b.Done.TrySetException(e);
            }
            finally
            {
                Interlocked.Add(ref _pending, -batch.Count);
            }
        }
    }

    public void Dispose()
    {
        _channel.Writer.TryComplete();
        _worker.Join();
    }
}
