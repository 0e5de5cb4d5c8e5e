/ kdb+ tables, read by adapter.py: in-memory tables typed up front, saved splayed after the load.

/ name: trades
([] ts:`timestamp$(); symbol:`symbol$(); venue:`symbol$(); trade_id:`long$(); price:`float$(); qty:`float$(); side:`short$())

/ name: quotes
([] ts:`timestamp$(); symbol:`symbol$(); venue:`symbol$(); bid_px:`float$(); bid_qty:`float$(); ask_px:`float$(); ask_qty:`float$())
