"""Churn prediction: every BG/NBD fit the sweep made (the newest converged one is in force)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Float, Identity, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base


class PredictionFit(Base):
    __tablename__ = "prediction_fits"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    fitted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    observed_through: Mapped[date] = mapped_column(Date, nullable=False)
    time_unit: Mapped[str] = mapped_column(String(10), nullable=False, server_default="day")
    r: Mapped[float] = mapped_column(Float(53), nullable=False)
    alpha: Mapped[float] = mapped_column(Float(53), nullable=False)
    a: Mapped[float] = mapped_column(Float(53), nullable=False)
    b: Mapped[float] = mapped_column(Float(53), nullable=False)
    log_likelihood: Mapped[float] = mapped_column(Float(53), nullable=False)
    customers: Mapped[int] = mapped_column(Integer, nullable=False)
    distinct_histories: Mapped[int] = mapped_column(Integer, nullable=False)
    converged: Mapped[bool] = mapped_column(Boolean, nullable=False)
    iterations: Mapped[int] = mapped_column(Integer, nullable=False)
    duration_ms: Mapped[float] = mapped_column(Float(53), nullable=False)
    cause: Mapped[str] = mapped_column(String(20), nullable=False)
