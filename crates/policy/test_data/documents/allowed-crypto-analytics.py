# Bitcoin and Monero price analysis: mentions coins and wallets, mines nothing.
import pandas as pd
prices = pd.read_csv("btc_xmr_daily.csv", parse_dates=["date"])
prices["btc_return"] = prices["btc_close"].pct_change()
prices["xmr_return"] = prices["xmr_close"].pct_change()
wallets = pd.read_csv("wallet_balances.csv")
print(prices[["btc_return", "xmr_return"]].corr())
print(wallets.groupby("wallet")["balance"].sum().head())
