"""HFformer, LSTM and naive forecasters: training, evaluation, backtest, export, report."""
