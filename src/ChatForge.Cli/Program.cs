using static TorchSharp.torch;
class P { static void Main() { var a = randn(3, 3); System.Console.WriteLine((a.matmul(a)).sum().item<float>()); System.Console.WriteLine(TorchSharp.torch.get_num_threads()); } }
