"""The ORM models the server tests share: one declarative Base, one class per test table.

``tables`` (tests/server/conftest.py) creates them all once per test session.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "test_routing_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    addresses: Mapped[list[Address]] = relationship(
        back_populates="user", lazy="select", order_by="Address.id"
    )


class Address(Base):
    __tablename__ = "test_routing_address"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("test_routing_user.id"))
    email: Mapped[str] = mapped_column(String(100))
    user: Mapped[User] = relationship(back_populates="addresses")


class Item(Base):
    __tablename__ = "test_ru_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    parts: Mapped[list[Part]] = relationship(cascade="all, delete-orphan", order_by="Part.id")


class Part(Base):
    __tablename__ = "test_ru_part"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("test_ru_item.id"))
    label: Mapped[str] = mapped_column(String(100))


class Doc(Base):
    __tablename__ = "causal_docs"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column()


class ScopeItem(Base):
    __tablename__ = "causal_scope_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[int] = mapped_column()
    version: Mapped[int] = mapped_column()
